// The tokenizer.json tokenizer (hf_tokenizer.h): the BPE model, added-token splitting and the
// assembly of the pipeline stages of hf/components.h. Semantics follow the Hugging Face
// `tokenizers` library (tokenizer/added_vocabulary.rs, models/bpe); this is an independent
// implementation that shares the BPE merge loop and hash tables of bpe.h with the GGUF tokenizer.
#include "text/hf_tokenizer.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "core/error.h"
#include "core/mmap.h"
#include "text/bpe.h"
#include "text/hf/components.h"

namespace edgevl::text {

namespace {

using detail::Candidate;
using detail::pair_key;
using detail::Symbol;
using hf::json;

constexpr uint32_t kNoChar = 0x110000;  // beyond Unicode

// (left id, right id) -> rank of the merge of the two, and rank -> the merged token. When ids
// fit in 20 bits and ranks in 24 (every vocabulary we know of), a slot is one 64-bit word
// (left, right, rank) and probing starts at the first slot of the 64-byte line the hash picks:
// nearly every look-up, found or not, reads one cache line, which prefetch() loads ahead (the
// cold merge loop is bound by these misses; the 16 MB FlatMap64 of Gemma's 515k merges, 16-byte
// slots probed from anywhere in a line, often needed a second one). Wider ids: a FlatMap64.
class MergeTable {
 public:
  // triples: (left, right, merged) of each rank, all valid ids; the first rank of a pair wins.
  void build(const int32_t* triples, size_t n) {
    int32_t max_id = 0;
    for (size_t k = 0; k < 3 * n; ++k) max_id = std::max(max_id, triples[k]);
    result_.resize(n);
    for (size_t r = 0; r < n; ++r) result_[r] = triples[3 * r + 2];
    // GPT-2-style vocabularies number merged tokens by rank: then the result needs no look-up.
    linear_ = n > 0;
    for (size_t r = 0; r < n && linear_; ++r) linear_ = result_[r] == result_[0] + (int32_t)r;
    compact_ = max_id < (int32_t)kIdMask && n <= kRankMask;
    if (!compact_) {
      wide_.reserve(n);
      for (size_t r = 0; r < n; ++r) wide_.insert(pair_key(triples[3 * r], triples[3 * r + 1]), (int32_t)r);
      return;
    }
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, kEmpty);
    mask_ = cap - 1;
    constexpr size_t kAhead = 16;
    for (size_t r = 0; r < n; ++r) {
      if (r + kAhead < n) prefetch(triples[3 * (r + kAhead)], triples[3 * (r + kAhead) + 1]);
      const uint64_t k = key(triples[3 * r], triples[3 * r + 1]);
      for (size_t i = start(k);; i = (i + 1) & mask_) {
        uint64_t& sl = slots_[i];
        if (sl == kEmpty) {
          sl = k << kRankBits | r;
          break;
        }
        if ((sl >> kRankBits) == k) break;
      }
    }
  }
  [[gnu::always_inline]] void prefetch(int32_t a, int32_t b) const {
    if (compact_) __builtin_prefetch(&slots_[start(key(a, b))]);
    else wide_.prefetch(pair_key(a, b));
  }
  // The rank of merging a then b, or -1.
  int32_t rank(int32_t a, int32_t b) const {
    if (!compact_) {
      const int32_t* r = wide_.find(pair_key(a, b));
      return r ? *r : -1;
    }
    const uint64_t k = key(a, b);
    for (size_t i = start(k);; i = (i + 1) & mask_) {
      const uint64_t sl = slots_[i];
      if ((sl >> kRankBits) == k) return (int32_t)(sl & kRankMask);
      if (sl == kEmpty) return -1;
    }
  }
  int32_t result(int32_t rank) const { return linear_ ? result_[0] + rank : result_[(size_t)rank]; }
  [[gnu::always_inline]] void prefetch_result(int32_t rank) const {
    if (!linear_) __builtin_prefetch(&result_[(size_t)rank]);
  }

 private:
  static constexpr int kIdBits = 20, kRankBits = 24;
  static constexpr uint64_t kIdMask = (uint64_t{1} << kIdBits) - 1, kRankMask = (uint64_t{1} << kRankBits) - 1;
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // left = right = kIdMask: never an id here
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << kIdBits | (uint32_t)b; }
  size_t start(uint64_t k) const {
    k ^= k >> 29;
    k *= 0xbf58476d1ce4e5b9ULL;
    k ^= k >> 32;
    return (size_t)k & mask_ & ~size_t{7};
  }
  bool compact_ = true, linear_ = false;
  detail::TableArray<uint64_t> slots_;
  size_t mask_ = 0;
  std::vector<int32_t> result_;
  detail::FlatMap64<int32_t> wide_;
};

// A word waiting for its BPE merges. Words are merged several at a time, interleaved: a step of
// one word computes the (left, right) pairs its last merge created and prefetches their slots of
// the merges table, then the other words take their steps while those cache misses are served.
// A cold encode (a fresh word cache) is otherwise bound by one dependent cache miss per merge.
// Each word reserved `syms.size()` slots of the output for its ids (kGap where unused).
struct MergeJob {
  struct Pending {
    int32_t left, right;
  };
  struct Queued {  // a candidate merge of the heap path (long words)
    int32_t rank, left, right;
    uint32_t size;  // left.len + right.len when queued: detects stale entries
  };
  std::string word;  // for the word cache
  uint64_t hash = 0;
  size_t out_at = 0;
  std::vector<Symbol> syms;
  // Words of up to kFlat symbols: their ids in an array that merges shrink, and the rank of
  // each one's merge with the next (kNoRank: none).
  bool flat = false;
  std::vector<int32_t> ids;
  std::vector<uint32_t> rank;
  std::vector<Queued> heap;
  std::vector<Pending> pending;  // pairs whose look-ups were prefetched
};
constexpr size_t kFlat = 64;
constexpr uint32_t kNoRank = UINT32_MAX;
constexpr int32_t kGap = INT32_MIN;  // an output slot reserved for a word's ids and left unused
constexpr size_t kJobs = 16;         // words merged at once

// Scratch buffers of one encode() call (encode is const and may run on several threads).
struct Scratch {
  std::string norm;
  hf::Pieces pieces, tmp;
  struct Unit {
    uint32_t begin, size;
    int32_t id;  // >= 0: the word is this token (ignore_merges); else BPE-merged
  };
  std::vector<Unit> units;  // the words of encode_words, after split_word
  std::array<MergeJob, kJobs> jobs;
  std::vector<MergeJob*> active, idle;
  bool gaps = false;  // some output slots hold kGap
  Scratch() {
    for (MergeJob& j : jobs) idle.push_back(&j);
  }
};

// Word -> ids memo shared by all encode() calls, as tokenizers' BPE cache: natural text repeats
// its words, and a hit skips the merge loop and its cache-missing hash look-ups. Sharded by hash,
// each shard under its own mutex: an open-addressing table of 16-byte slots whose words and ids
// sit back to back in two buffers (no allocation per entry). The slot tables are allocated
// once, at load, so prefetch() can read their addresses without the lock: encode prefetches a word's slot a few words ahead, since a look-up otherwise waits on a
// cache miss that the mutex keeps from overlapping the next one. Bounded: a full shard stops
// taking words; words up to 64 bytes.
class WordCache {
 public:
  static constexpr size_t kMaxWord = 64;
  static uint64_t hash(std::string_view w) { return detail::StringIndex::hash(w); }
  WordCache() { slots_.assign(kShards * kSlots, Entry{}); }
  [[gnu::always_inline]] void prefetch(uint64_t h) const { __builtin_prefetch(&slots_[slot(h)]); }
  bool get(std::string_view w, uint64_t h, std::vector<int32_t>& out) const {
    Shard& s = shard(h);
    std::lock_guard<std::mutex> lock(s.mu);
    for (size_t i = slot(h);; i = next(i)) {
      const Entry& e = slots_[i];
      if (e.key_len == 0) return false;
      if (e.tag == tag(h) && e.key_len == w.size() && std::memcmp(s.keys.data() + e.key_off, w.data(), w.size()) == 0) {
        out.insert(out.end(), s.ids.begin() + e.ids_off, s.ids.begin() + e.ids_off + e.n_ids);
        return true;
      }
    }
  }
  void put(std::string_view w, uint64_t h, const int32_t* ids, size_t n) const {
    if (w.empty() || w.size() > kMaxWord || n > 0xFFFF) return;
    Shard& s = shard(h);
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.count >= kPerShard) return;
    for (size_t i = slot(h);; i = next(i)) {
      Entry& e = slots_[i];
      if (e.key_len == 0) {
        e = {tag(h), (uint32_t)s.keys.size(), (uint32_t)s.ids.size(), (uint16_t)w.size(), (uint16_t)n};
        s.keys.append(w);
        s.ids.insert(s.ids.end(), ids, ids + n);
        ++s.count;
        return;
      }
      if (e.tag == tag(h) && e.key_len == w.size() && std::memcmp(s.keys.data() + e.key_off, w.data(), w.size()) == 0) return;
    }
  }

 private:
  static constexpr size_t kShards = 16, kPerShard = 4096, kSlots = 2 * kPerShard;
  struct Entry {
    uint32_t tag = 0;  // the hash's high half
    uint32_t key_off = 0, ids_off = 0;
    uint16_t key_len = 0, n_ids = 0;  // key_len 0: empty slot
  };
  struct Shard {
    std::mutex mu;
    std::string keys;
    std::vector<int32_t> ids;
    size_t count = 0;
  };
  static uint32_t tag(uint64_t h) { return (uint32_t)(h >> 32); }
  // Shard h % kShards owns slots [shard * kSlots, (shard + 1) * kSlots).
  static size_t slot(uint64_t h) { return (h % kShards) * kSlots + ((h >> 4) & (kSlots - 1)); }
  static size_t next(size_t i) { return (i & ~(kSlots - 1)) | ((i + 1) & (kSlots - 1)); }
  Shard& shard(uint64_t h) const { return shards_[h % kShards]; }
  mutable detail::TableArray<Entry> slots_;  // 2 MiB: one huge page where the system gives one
  mutable std::array<Shard, kShards> shards_;
};

// ---------------------------------------------------------------------------------------------
// The BPE model (tokenizers models/bpe): characters -> vocabulary ids (or byte-fallback tokens,
// or the unknown token), then merges by rank.

class BpeModel {
 public:
  explicit BpeModel(hf::TokenizerFile& f);
  // The words text[spans[k]] in order (a pre-tokenizer's pieces).
  void encode_words(std::string_view text, const Span* spans, size_t n, Scratch& sc, std::vector<int32_t>& out) const;
  // Runs the queued words to their end and removes the unused output slots.
  void finish(Scratch& sc, std::vector<int32_t>& out) const;
  int32_t find(std::string_view s) const { return index_.find(s); }
  const std::vector<std::string_view>& vocab() const { return vocab_; }
  int32_t unk() const { return unk_; }

 private:
  int32_t char_id(std::string_view word, size_t i, size_t n, bool valid) const;
  int32_t plain_char_id(uint32_t cp) const {
    if (cp < low_char_.size()) return low_char_[cp];
    const int32_t* id = high_char_.find(cp);
    return id ? *id : -1;
  }
  void merge_word(std::string_view word, uint64_t hash, Scratch& sc, std::vector<int32_t>& out) const;
  void split_word(std::string_view text, size_t begin, size_t end, std::vector<Scratch::Unit>& units) const;
  // Whether some merge joins a token ending in character x to one starting with y: a Bloom-style
  // bit set over those (x, y) pairs (a false "maybe" only loses a split point).
  static size_t seam_bit(uint32_t x, uint32_t y) {
    uint64_t k = ((uint64_t)x << 21 | y) * 0x9E3779B97F4A7C15ULL;
    return (size_t)(k >> (64 - kSeamBits));
  }
  bool may_join(uint32_t x, uint32_t y) const {
    const size_t b = seam_bit(x, y);
    return (seams_[b >> 6] >> (b & 63)) & 1;
  }
  static constexpr int kSeamBits = 20;
  bool step(MergeJob& j) const;
  void run_until_idle(Scratch& sc, std::vector<int32_t>& out, bool all) const;
  void resolve_merges(const std::vector<std::pair<std::string_view, std::string_view>>& merges);

  std::string text_;                     // the token strings, back to back
  std::vector<std::string_view> vocab_;  // id -> token in text_ ("" where the vocabulary has no such id)
  detail::StringIndex index_;       // over vocab_
  MergeTable merges_;
  // Ids of the single-character tokens: a table below U+0800, a hash map above.
  std::array<int32_t, 0x800> low_char_;
  detail::FlatMap64<int32_t> high_char_;
  std::array<int32_t, 256> byte_token_;
  std::string prefix_, suffix_;  // continuing_subword_prefix, end_of_word_suffix
  int32_t unk_ = -1;
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  std::vector<uint64_t> seams_;  // may_join's bits; empty: words are never split
  WordCache cache_;
};

BpeModel::BpeModel(hf::TokenizerFile& f) {
  const json* model = f.rest.contains("model") ? &f.rest["model"] : nullptr;
  EV_CHECK(model && model->is_object(), "tokenizer.json: no model");
  const char* what = "BPE model";
  const std::string type = hf::get_string(*model, "type", "model", f.has_merges ? "BPE" : "");
  EV_CHECK(type == "BPE", "tokenizer.json: unsupported model type '", type.empty() ? "(none)" : type, "'");
  EV_CHECK(f.has_vocab, "tokenizer.json: the BPE model has no vocab object");
  if (model->contains("dropout") && !(*model)["dropout"].is_null()) {
    const json& d = (*model)["dropout"];
    EV_CHECK(d.is_number() && d.get<double>() == 0.0, "tokenizer.json: BPE dropout is not supported");
  }
  prefix_ = hf::get_string(*model, "continuing_subword_prefix", what, "");
  suffix_ = hf::get_string(*model, "end_of_word_suffix", what, "");
  byte_fallback_ = hf::get_bool(*model, "byte_fallback", what, false);
  fuse_unk_ = hf::get_bool(*model, "fuse_unk", what, false);
  ignore_merges_ = hf::get_bool(*model, "ignore_merges", what, false);

  int64_t n = 0;
  size_t bytes = 0;
  for (const auto& [tok, id] : f.vocab) {
    n = std::max<int64_t>(n, id + 1);
    bytes += tok.size();
  }
  EV_CHECK(n > 0, "tokenizer.json: the vocabulary is empty");
  EV_CHECK(n <= (int64_t)f.vocab.size() * 2 + 1024, "tokenizer.json: vocabulary ids reach ", n - 1, " for ",
           f.vocab.size(), " tokens");
  text_.resize(bytes);
  vocab_.assign((size_t)n, std::string_view());
  std::vector<uint8_t> seen((size_t)n);
  size_t at = 0;
  for (const auto& [tok, id] : f.vocab) {
    EV_CHECK(!seen[id], "tokenizer.json: vocabulary id ", id, " is given twice ('", vocab_[id], "', '", tok, "')");
    seen[id] = 1;
    std::memcpy(text_.data() + at, tok.data(), tok.size());
    vocab_[id] = std::string_view(text_.data() + at, tok.size());
    at += tok.size();
  }
  f.vocab = {};
  index_.build(vocab_);
  low_char_.fill(-1);
  for (size_t id = 0; id < vocab_.size(); ++id) {
    const std::string_view t = vocab_[id];
    if (t.empty() || utf8::valid_char_len(t, 0) != t.size()) continue;
    const uint32_t cp = detail::utf8_codepoint_at(t, 0, t.size());
    if (cp < low_char_.size()) {
      if (low_char_[cp] < 0) low_char_[cp] = (int32_t)id;
    } else {
      high_char_.insert(cp, (int32_t)id);  // the first id of a duplicate keeps its place
    }
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    byte_token_[b] = index_.find(name);
  }
  const std::string unk = hf::get_string(*model, "unk_token", what, "");
  if (!unk.empty()) {
    unk_ = index_.find(unk);
    EV_CHECK(unk_ >= 0, "tokenizer.json: unk_token '", unk, "' is not in the vocabulary");
  }
  resolve_merges(f.merges);
  f.merges = {};
}

// Merge r "a b" -> (id a, id b) -> (r, id of a+b), where a leading continuing-subword prefix of b
// is not repeated in the merged token. The look-ups go in batches (StringIndex::find_many: the
// cache misses of a batch overlap) on two threads; the table is then filled in rank order.
void BpeModel::resolve_merges(const std::vector<std::pair<std::string_view, std::string_view>>& merges) {
  const size_t n = merges.size();
  auto joined_of = [&](size_t r, std::string& out) {
    const auto& [a, b] = merges[r];
    out += a;
    out += !prefix_.empty() && b.starts_with(prefix_) ? b.substr(prefix_.size()) : b;
  };
  std::vector<int32_t> ids(n * 3);
  // The (last character of a, first character of b) pairs, for split_word. Only without a
  // prefix/suffix, where a merged token's text is exactly the text it covers.
  const bool seams = prefix_.empty() && suffix_.empty();
  std::vector<uint64_t> seam_bits[2];
  auto lookup = [&](size_t begin, size_t end) {
    if (seams) {
      std::vector<uint64_t>& bits = seam_bits[begin == 0 ? 0 : 1];
      bits.assign((size_t)1 << (kSeamBits - 6), 0);
      for (size_t r = begin; r < end; ++r) {
        const auto& [a, b] = merges[r];
        if (a.empty() || b.empty()) continue;
        size_t i = a.size() - 1;
        while (i > 0 && ((uint8_t)a[i] & 0xC0) == 0x80) --i;
        size_t la = utf8::valid_char_len(a, i), lb = utf8::valid_char_len(b, 0);
        // A token that does not end / start with a whole character: no split around it is safe.
        const uint32_t x = la == a.size() - i ? detail::utf8_codepoint_at(a, i, la) : kNoChar;
        const uint32_t y = lb > 0 ? detail::utf8_codepoint_at(b, 0, lb) : kNoChar;
        const size_t bit = seam_bit(x, y);
        bits[bit >> 6] |= uint64_t{1} << (bit & 63);
      }
    }
    constexpr size_t kChunk = 4096;
    std::string joined;
    std::vector<size_t> ends;
    std::vector<std::string_view> keys;
    for (size_t c0 = begin; c0 < end; c0 += kChunk) {
      const size_t c1 = std::min(end, c0 + kChunk);
      joined.clear();
      ends.clear();
      for (size_t r = c0; r < c1; ++r) {
        joined_of(r, joined);
        ends.push_back(joined.size());
      }
      keys.clear();
      for (size_t r = c0, b = 0; r < c1; ++r) {
        keys.push_back(merges[r].first);
        keys.push_back(merges[r].second);
        keys.push_back(std::string_view(joined).substr(b, ends[r - c0] - b));
        b = ends[r - c0];
      }
      index_.find_many(keys.data(), keys.size(), &ids[c0 * 3]);
    }
  };
  if (n >= 65536 && std::thread::hardware_concurrency() >= 2) {
    std::thread second(lookup, n / 2, n);
    lookup(0, n / 2);
    second.join();
  } else {
    lookup(0, n);
  }
  if (seams) {
    seams_ = std::move(seam_bits[0]);
    for (size_t k = 0; k < seam_bits[1].size(); ++k) seams_[k] |= seam_bits[1][k];
  }
  for (size_t r = 0; r < n; ++r) {
    const int32_t* m = &ids[r * 3];
    if (m[0] < 0 || m[1] < 0 || m[2] < 0) {
      const auto& [a, b] = merges[r];
      EV_CHECK(m[0] >= 0 && m[1] >= 0, "tokenizer.json: merge ", r, " ('", a, " ", b, "') refers to unknown token '",
               m[0] < 0 ? a : b, "'");
      std::string joined;
      joined_of(r, joined);
      fail("tokenizer.json: merge ", r, " ('", a, " ", b, "') makes '", joined, "', which is not in the vocabulary");
    }
  }
  merges_.build(ids.data(), n);
}

// Id of the character word[i, i+n) (`valid`: a UTF-8 character, else one stray byte) with the
// continuing-subword prefix / end-of-word suffix rules.
int32_t BpeModel::char_id(std::string_view word, size_t i, size_t n, bool valid) const {
  const bool plain = (prefix_.empty() || i == 0) && (suffix_.empty() || i + n < word.size());
  if (plain && valid) {
    const uint32_t cp = detail::utf8_codepoint_at(word, i, n);
    if (cp < low_char_.size()) return low_char_[cp];
    const int32_t* id = high_char_.find(cp);
    return id ? *id : -1;
  }
  if (plain) return index_.find(word.substr(i, n));
  std::string s;
  if (i > 0) s += prefix_;
  s.append(word.substr(i, n));
  if (i + n == word.size()) s += suffix_;
  return index_.find(s);
}

void BpeModel::encode_words(std::string_view text, const Span* spans, size_t n, Scratch& sc,
                            std::vector<int32_t>& out) const {
  std::vector<Scratch::Unit>& units = sc.units;
  units.clear();
  for (size_t k = 0; k < n; ++k) {
    const std::string_view word = text.substr(spans[k].begin, spans[k].size);
    if (word.empty()) continue;
    if (ignore_merges_) {
      const int32_t id = index_.find(word);
      if (id >= 0) {
        units.push_back({spans[k].begin, spans[k].size, id});
        continue;
      }
    }
    if (word.size() > WordCache::kMaxWord && !seams_.empty()) {
      split_word(text, spans[k].begin, spans[k].begin + spans[k].size, units);
      continue;
    }
    units.push_back({spans[k].begin, spans[k].size, -1});
  }
  // Word-cache slots are prefetched kAhead words ahead (hashes kept in a ring).
  constexpr size_t kAhead = 4;
  uint64_t ring[kAhead];
  auto prepare = [&](size_t k) {
    const Scratch::Unit& u = units[k];
    if (u.id >= 0 || u.size > WordCache::kMaxWord) return;
    const uint64_t h = WordCache::hash(text.substr(u.begin, u.size));
    cache_.prefetch(h);
    ring[k % kAhead] = h;
  };
  for (size_t k = 0; k < std::min(kAhead, units.size()); ++k) prepare(k);
  for (size_t k = 0; k < units.size(); ++k) {
    const Scratch::Unit u = units[k];
    const uint64_t h = ring[k % kAhead];
    if (k + kAhead < units.size()) prepare(k + kAhead);
    if (u.id >= 0) out.push_back(u.id);
    else merge_word(text.substr(u.begin, u.size), h, sc, out);
  }
}


// A long word (Gemma's pre-tokenizer leaves whole sentences as one word) is cut where no merge
// can ever join the two sides: between characters x and y that are vocabulary characters of
// their own (so a token covering x ends in x, one covering y starts with y) and that no merge
// pairs (may_join). BPE then merges each part on its own exactly as it would have in the whole,
// and the parts, words of ordinary size, go through the word cache. Cuts are made before a
// space-like character, or anywhere allowed once a part is long.
void BpeModel::split_word(std::string_view text, size_t begin, size_t end, std::vector<Scratch::Unit>& units) const {
  constexpr size_t kLongPart = 48;
  const std::string_view word = text.substr(0, end);
  uint32_t x = kNoChar;  // the previous character, kNoChar when not plain
  for (size_t i = begin; i < end;) {
    const size_t n = utf8::valid_char_len(word, i);
    uint32_t y = kNoChar;
    if (n > 0) {
      y = detail::utf8_codepoint_at(word, i, n);
      if (plain_char_id(y) < 0) y = kNoChar;
    }
    if (x != kNoChar && y != kNoChar && i > begin &&
        (y == ' ' || y == 0x2581 || y == 0x120 || y == '\n' || i - begin >= kLongPart) && !may_join(x, y)) {
      units.push_back({(uint32_t)begin, (uint32_t)(i - begin), -1});
      begin = i;
    }
    x = y;
    i += n > 0 ? n : 1;
  }
  units.push_back({(uint32_t)begin, (uint32_t)(end - begin), -1});
}


// BPE merges of one word (no ignore_merges short cut), through the word cache. A word that is
// not cached is queued as a MergeJob (its ids land in `out` when it is done; see finish()).
void BpeModel::merge_word(std::string_view word, uint64_t h, Scratch& sc, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  const bool cacheable = word.size() <= WordCache::kMaxWord;
  if (cacheable && cache_.get(word, h, out)) return;
  if (sc.idle.empty()) run_until_idle(sc, out, false);
  MergeJob& j = *sc.idle.back();
  std::vector<Symbol>& syms = j.syms;
  syms.clear();
  auto push = [&](int32_t id, size_t start, size_t len) {
    const auto k = (int32_t)syms.size();
    syms.push_back({k - 1, k + 1, (uint32_t)start, (uint32_t)len, id});
  };
  bool last_unk = false;
  for (size_t i = 0; i < word.size();) {
    size_t n = utf8::valid_char_len(word, i);
    const bool valid = n > 0;
    if (!valid) n = 1;  // an invalid byte is a character of its own (byte fallback takes it)
    const int32_t id = char_id(word, i, n, valid);
    bool unknown = false;
    if (id >= 0) {
      push(id, i, n);
    } else {
      bool bytes = byte_fallback_;
      for (size_t k = 0; k < n && bytes; ++k) bytes = byte_token_[(uint8_t)word[i + k]] >= 0;
      if (bytes) {
        for (size_t k = 0; k < n; ++k) push(byte_token_[(uint8_t)word[i + k]], i + k, 1);
      } else if (unk_ >= 0) {
        unknown = true;
        if (fuse_unk_ && last_unk) syms.back().len += (uint32_t)n;
        else push(unk_, i, n);
      }
      // else: no way to represent the character (tokenizers raises here); it is dropped
    }
    last_unk = unknown;
    i += n;
  }
  if (syms.empty()) return;
  syms.back().next = -1;
  if (syms.size() == 1) {
    out.push_back(syms[0].id);
    if (cacheable) cache_.put(word, h, &syms[0].id, 1);
    return;
  }
  sc.idle.pop_back();
  sc.active.push_back(&j);
  j.word.assign(cacheable ? word : std::string_view());
  j.hash = h;
  j.out_at = out.size();
  out.resize(out.size() + syms.size(), kGap);
  sc.gaps = true;
  j.heap.clear();
  j.pending.clear();
  const auto n = (int32_t)syms.size();
  j.flat = syms.size() <= kFlat;
  if (j.flat) {
    j.ids.clear();
    for (const Symbol& sy : syms) j.ids.push_back(sy.id);
    j.rank.assign((size_t)n, kNoRank);
  }
  for (int32_t k = 0; k + 1 < n; ++k) {
    merges_.prefetch(syms[k].id, syms[k + 1].id);
    j.pending.push_back({k, k + 1});
  }
}

// One merge of a queued word: looks up the pairs prefetched by the previous step, applies the
// lowest-rank merge (the leftmost on ties, as tokenizers' BPE) and prefetches the pairs it
// creates. True when no merge is left. Words up to kFlat symbols keep their ids in an array
// (a merge erases one entry) with the rank of each one's merge with the next, and take the lowest
// (rank, position) without branches; longer ones use a linked list and a heap with lazily skipped
// stale entries.
bool BpeModel::step(MergeJob& j) const {
  std::vector<Symbol>& syms = j.syms;
  auto want = [&](int32_t l, int32_t r) {
    merges_.prefetch(syms[l].id, syms[r].id);
    j.pending.push_back({l, r});
  };
  auto join = [&](int32_t left, int32_t id) {
    Symbol& l = syms[left];
    Symbol& r = syms[l.next];
    l.len += r.len;
    l.id = id;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = left;
  };
  if (j.flat) {
    std::vector<int32_t>& ids = j.ids;
    std::vector<uint32_t>& rank = j.rank;
    for (const MergeJob::Pending& p : j.pending) {
      const int32_t r = merges_.rank(ids[p.left], ids[p.left + 1]);
      rank[p.left] = r >= 0 ? (uint32_t)r : kNoRank;
      if (r >= 0) merges_.prefetch_result(r);
    }
    j.pending.clear();
    // The lowest (rank, position): branch-free over a short array.
    uint64_t best = (uint64_t)kNoRank << 8;
    for (size_t i = 0; i + 1 < ids.size(); ++i) best = std::min(best, (uint64_t)rank[i] << 8 | i);
    if ((best >> 8) == kNoRank) return true;
    const auto at = (int32_t)(best & 0xFF);
    ids[at] = merges_.result((int32_t)(best >> 8));
    ids.erase(ids.begin() + at + 1);
    rank.erase(rank.begin() + at + 1);
    rank[at] = kNoRank;
    auto want_flat = [&](int32_t l) {
      merges_.prefetch(ids[l], ids[l + 1]);
      j.pending.push_back({l, l + 1});
    };
    if ((size_t)at + 1 < ids.size()) want_flat(at);
    if (at > 0) {
      rank[at - 1] = kNoRank;
      want_flat(at - 1);
    }
    return false;
  }
  auto worse = [](const MergeJob::Queued& a, const MergeJob::Queued& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
  };
  for (const MergeJob::Pending& p : j.pending) {
    const int32_t r = merges_.rank(syms[p.left].id, syms[p.right].id);
    if (r < 0) continue;
    merges_.prefetch_result(r);
    j.heap.push_back({r, p.left, p.right, syms[p.left].len + syms[p.right].len});
    std::push_heap(j.heap.begin(), j.heap.end(), worse);
  }
  j.pending.clear();
  while (!j.heap.empty()) {
    std::pop_heap(j.heap.begin(), j.heap.end(), worse);
    const MergeJob::Queued c = j.heap.back();
    j.heap.pop_back();
    const Symbol& l = syms[c.left];
    const Symbol& r = syms[c.right];
    // Symbols only grow, so unchanged lengths and adjacency mean the pair is still the same.
    if (l.len == 0 || r.len == 0 || l.next != c.right || l.len + r.len != c.size) continue;
    join(c.left, merges_.result(c.rank));
    if (l.prev >= 0) want(l.prev, c.left);
    if (l.next >= 0) want(c.left, l.next);
    return false;
  }
  return true;
}

// Steps the queued words in turn until one is done (all: until every one is), writing the ids
// of the finished words to their slots of `out` and to the word cache.
void BpeModel::run_until_idle(Scratch& sc, std::vector<int32_t>& out, bool all) const {
  while (!sc.active.empty()) {
    bool freed = false;
    for (size_t a = 0; a < sc.active.size();) {
      MergeJob& j = *sc.active[a];
      if (!step(j)) {
        ++a;
        continue;
      }
      int32_t* dst = out.data() + j.out_at;
      size_t c = 0;
      if (j.flat) {
        c = j.ids.size();
        std::memcpy(dst, j.ids.data(), c * sizeof(int32_t));
      } else {
        for (int32_t k = 0; k >= 0; k = j.syms[k].next) dst[c++] = j.syms[k].id;
      }
      if (!j.word.empty()) cache_.put(j.word, j.hash, dst, c);
      sc.active[a] = sc.active.back();
      sc.active.pop_back();
      sc.idle.push_back(&j);
      freed = true;
    }
    if (freed && !all) return;
  }
}

void BpeModel::finish(Scratch& sc, std::vector<int32_t>& out) const {
  run_until_idle(sc, out, true);
  if (sc.gaps) out.erase(std::remove(out.begin(), out.end(), kGap), out.end());
  sc.gaps = false;
}


// ---------------------------------------------------------------------------------------------
// The tokenizer

struct AddedToken {
  std::string content;
  int32_t id;
  bool special, lstrip, rstrip, single_word, normalized;
};

class HfTokenizer final : public Tokenizer {
 public:
  HfTokenizer(hf::TokenizerFile f, const json& config, const json& gen_config);

  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const override;
  std::string token_piece(int32_t id) const override;
  int32_t vocab_size() const override { return (int32_t)added_of_id_.size(); }
  int32_t bos_id() const override { return bos_; }
  int32_t eos_id() const override { return eos_; }
  bool is_end_of_generation(int32_t id) const override { return in_range(id) && eog_[id]; }
  bool is_special(int32_t id) const override { return in_range(id) && special_[id]; }
  std::string token_text(int32_t id) const override { return std::string(text_of(check_id(id))); }

 private:
  bool in_range(int32_t id) const { return id >= 0 && id < vocab_size(); }
  int32_t check_id(int32_t id) const {
    EV_CHECK(in_range(id), "tokenizer: token id ", id, " is outside the vocabulary [0, ", vocab_size(), ")");
    return id;
  }
  std::string_view text_of(int32_t id) const {
    const int32_t a = added_of_id_[id];
    if (a >= 0) return added_[a].content;
    return (size_t)id < model_.vocab().size() ? std::string_view(model_.vocab()[id]) : std::string_view();
  }
  int32_t id_of(const std::string& s) const {
    const auto it = added_by_content_.find(s);
    return it != added_by_content_.end() ? it->second : model_.find(s);
  }
  void read_added_tokens(const json& list);
  void read_config(const json& config, const json& gen_config);
  template <typename OnText, typename OnToken>
  void split_added(const detail::ByteTrie& trie, std::string_view text, bool parse_special, OnText&& on_text,
                   OnToken&& on_token) const;
  void encode_fragment(std::string_view frag, bool first, bool parse_special, Scratch& sc, std::vector<int32_t>& out) const;
  void encode_pieces(std::string_view s, bool first, Scratch& sc, std::vector<int32_t>& out) const;

  BpeModel model_;
  std::vector<AddedToken> added_;
  std::unordered_map<std::string, int32_t> added_by_content_;
  std::vector<int32_t> added_of_id_;  // id -> index in added_, -1; its size is the vocabulary size
  detail::ByteTrie raw_trie_, normalized_trie_;  // values: index in added_
  std::unique_ptr<hf::Normalizer> normalizer_;
  std::unique_ptr<hf::PreTokenizer> pre_tokenizer_;
  std::unique_ptr<hf::Decoder> decoder_;
  hf::Template template_;
  int32_t bos_ = -1, eos_ = -1;
  std::vector<uint8_t> special_, eog_;
};

HfTokenizer::HfTokenizer(hf::TokenizerFile f, const json& config, const json& gen_config) : model_(f) {
  const json& root = f.rest;
  normalizer_ = hf::make_normalizer(root.value("normalizer", json()));
  pre_tokenizer_ = hf::make_pre_tokenizer(root.value("pre_tokenizer", json()));
  decoder_ = hf::make_decoder(root.value("decoder", json()));
  read_added_tokens(root.value("added_tokens", json()));
  template_ = hf::make_post_processor(root.value("post_processor", json()), [&](const std::string& s) {
    const int32_t id = id_of(s);
    EV_CHECK(id >= 0, "tokenizer.json: post_processor: unknown special token '", s, "'");
    return id;
  });
  for (int32_t id : template_.before) check_id(id);
  for (int32_t id : template_.after) check_id(id);
  read_config(config, gen_config);
}

void HfTokenizer::read_added_tokens(const json& list) {
  EV_CHECK(list.is_null() || list.is_array(), "tokenizer.json: added_tokens is not a list");
  int64_t n = (int64_t)model_.vocab().size();
  if (list.is_array()) {
    for (const json& t : list) {
      const char* what = "added token";
      EV_CHECK(t.is_object(), "tokenizer.json: an added token is not an object");
      AddedToken a;
      const int64_t id = hf::get_int(t, "id", what, -1);
      a.content = hf::get_string(t, "content", what, "");
      EV_CHECK(id >= 0 && id < (int64_t)1 << 30, "tokenizer.json: added token '", a.content, "' has invalid id ", id);
      EV_CHECK(!a.content.empty(), "tokenizer.json: added token ", id, " has no content");
      a.id = (int32_t)id;
      a.special = hf::get_bool(t, "special", what, false);
      a.lstrip = hf::get_bool(t, "lstrip", what, false);
      a.rstrip = hf::get_bool(t, "rstrip", what, false);
      a.single_word = hf::get_bool(t, "single_word", what, false);
      a.normalized = hf::get_bool(t, "normalized", what, !a.special);
      n = std::max(n, id + 1);
      added_.push_back(std::move(a));
    }
  }
  EV_CHECK(n <= (int64_t)model_.vocab().size() + (int64_t)added_.size() + 1024, "tokenizer.json: added token ids reach ",
           n - 1, " beyond a vocabulary of ", model_.vocab().size());
  added_of_id_.assign((size_t)n, -1);
  special_.assign((size_t)n, 0);
  for (size_t k = 0; k < added_.size(); ++k) {
    const AddedToken& a = added_[k];
    added_of_id_[a.id] = (int32_t)k;  // a later entry for the same id wins, as in tokenizers
    added_by_content_.emplace(a.content, a.id);
    special_[a.id] = a.special;
    if (!a.normalized) {
      raw_trie_.add(a.content, (int32_t)k);
    } else {
      // Normalized tokens are matched in normalized text, so their own text is normalized too.
      std::string s = a.content;
      if (normalizer_) normalizer_->normalize(s);
      normalized_trie_.add(s, (int32_t)k);
    }
  }
  if (model_.unk() >= 0) special_[model_.unk()] = 1;
}

void HfTokenizer::read_config(const json& config, const json& gen_config) {
  // bos_token / eos_token: a string or an AddedToken object {"content": ...}.
  auto token_of = [&](const char* key) -> int32_t {
    if (!config.is_object() || !config.contains(key)) return -1;
    const json& v = config[key];
    std::string s;
    if (v.is_string()) s = v.get<std::string>();
    else if (v.is_object() && v.contains("content") && v["content"].is_string()) s = v["content"].get<std::string>();
    return s.empty() ? -1 : id_of(s);
  };
  bos_ = token_of("bos_token");
  eos_ = token_of("eos_token");
  if (bos_ < 0 && !template_.before.empty()) bos_ = template_.before.front();
  if (eos_ < 0 && !template_.after.empty()) eos_ = template_.after.back();

  // transformers' Llama/Gemma fast tokenizers rebuild the post-processor from these flags.
  const std::string cls = hf::get_string(config, "tokenizer_class", "tokenizer_config.json", "");
  static const char* const kRebuilds[] = {"LlamaTokenizer", "LlamaTokenizerFast", "GemmaTokenizer", "GemmaTokenizerFast",
                                          "CodeLlamaTokenizer", "CodeLlamaTokenizerFast"};
  bool rebuilds = false;
  for (const char* c : kRebuilds) rebuilds = rebuilds || cls == c;
  if (rebuilds && config.is_object() && (config.contains("add_bos_token") || config.contains("add_eos_token"))) {
    const bool add_bos = hf::get_bool(config, "add_bos_token", "tokenizer_config.json", true);
    const bool add_eos = hf::get_bool(config, "add_eos_token", "tokenizer_config.json", false);
    template_ = {};
    if (add_bos && bos_ >= 0) template_.before.push_back(bos_);
    if (add_eos && eos_ >= 0) template_.after.push_back(eos_);
  }

  eog_.assign(added_of_id_.size(), 0);
  if (eos_ >= 0) eog_[eos_] = 1;
  if (gen_config.is_object() && gen_config.contains("eos_token_id")) {
    const json& e = gen_config["eos_token_id"];
    auto mark = [&](const json& v) {
      if (!v.is_number_integer()) return;
      const int64_t id = v.get<int64_t>();
      if (id >= 0 && id < vocab_size()) eog_[id] = 1;
    };
    if (e.is_array()) {
      for (const json& v : e) mark(v);
    } else {
      mark(e);
    }
  }
  // End-of-turn markers of common chat formats, when they are added tokens.
  static const char* const kEnd[] = {"<eos>", "</s>", "<|endoftext|>", "<|im_end|>", "<end_of_turn>", "<turn|>",
                                     "<|eot_id|>", "<|eom_id|>", "<|end|>", "<|end_of_text|>", "<|return|>"};
  for (const char* s : kEnd) {
    const auto it = added_by_content_.find(s);
    if (it != added_by_content_.end()) eog_[it->second] = 1;
  }
}

// Cuts `text` by the added tokens of `trie`, leftmost-longest, as tokenizers' AddedVocabulary:
// on_text(begin, end) for the stretches between tokens, on_token(id) for each token.
template <typename OnText, typename OnToken>
void HfTokenizer::split_added(const detail::ByteTrie& trie, std::string_view text, bool parse_special, OnText&& on_text,
                              OnToken&& on_token) const {
  size_t done = 0;
  size_t i = 0;
  while (i < text.size()) {
    int32_t k = -1;
    const size_t len = trie.may_start((uint8_t)text[i]) ? trie.longest(text, i, &k) : 0;
    if (len == 0) {
      ++i;
      continue;
    }
    const AddedToken& t = added_[k];
    size_t b = i, e = i + len;
    size_t n;
    if (t.special && !parse_special) {  // the matched text stays plain text
      i = e;
      continue;
    }
    if (t.single_word) {
      size_t p = b;
      while (p > 0 && ((uint8_t)text[p - 1] & 0xC0) == 0x80) --p;
      const bool left_ok = b == 0 || !hf::uni::is_word_char(hf::uni::next_char(text, p > 0 ? p - 1 : 0, &n));
      const bool right_ok = e == text.size() || !hf::uni::is_word_char(hf::uni::next_char(text, e, &n));
      if (!left_ok || !right_ok) {
        i = e;
        continue;
      }
    }
    if (t.lstrip) {
      while (b > done) {
        size_t p = b - 1;
        while (p > done && ((uint8_t)text[p] & 0xC0) == 0x80) --p;
        if (!hf::uni::is_whitespace(hf::uni::next_char(text, p, &n)) || p + n != b) break;
        b = p;
      }
    }
    if (t.rstrip) {
      while (e < text.size() && hf::uni::is_whitespace(hf::uni::next_char(text, e, &n))) e += n;
    }
    if (b > done) on_text(done, b);
    on_token(t.id);
    done = i = e;
  }
  if (done < text.size()) on_text(done, text.size());
}

std::vector<int32_t> HfTokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  EV_CHECK(text.size() < (size_t)INT32_MAX, "tokenizer: text of ", text.size(), " bytes is too long");
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special) out.insert(out.end(), template_.before.begin(), template_.before.end());
  Scratch sc;
  split_added(
      raw_trie_, text, parse_special,
      [&](size_t b, size_t e) { encode_fragment(text.substr(b, e - b), b == 0, parse_special, sc, out); },
      [&](int32_t id) { out.push_back(id); });
  model_.finish(sc, out);
  if (add_special) out.insert(out.end(), template_.after.begin(), template_.after.end());
  return out;
}

// A stretch of raw text between added tokens: normalize, cut by the normalized added tokens.
void HfTokenizer::encode_fragment(std::string_view frag, bool first, bool parse_special, Scratch& sc,
                                  std::vector<int32_t>& out) const {
  std::string_view s = frag;
  std::string norm;
  if (normalizer_) {
    norm.assign(frag);
    normalizer_->normalize(norm);
    s = norm;
  }
  if (normalized_trie_.empty()) {
    encode_pieces(s, first, sc, out);
    return;
  }
  split_added(
      normalized_trie_, s, parse_special,
      [&](size_t b, size_t e) { encode_pieces(s.substr(b, e - b), first && b == 0, sc, out); },
      [&](int32_t id) { out.push_back(id); });
}

void HfTokenizer::encode_pieces(std::string_view s, bool first, Scratch& sc, std::vector<int32_t>& out) const {
  if (s.empty()) return;
  if (!pre_tokenizer_) {
    const Span whole{0, (uint32_t)s.size()};
    model_.encode_words(s, &whole, 1, sc, out);
    return;
  }
  hf::Pieces& p = sc.pieces;
  p.text.assign(s);
  p.spans.assign(1, {0, (uint32_t)s.size()});
  pre_tokenizer_->pre_tokenize(p, sc.tmp, first);
  model_.encode_words(p.text, p.spans.data(), p.spans.size(), sc, out);
}

std::string HfTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    check_id(id);
    if (skip_special && special_[id]) continue;
    tokens.emplace_back(text_of(id));
  }
  std::string out;
  if (!decoder_) {  // tokenizers joins the tokens with spaces when there is no decoder
    for (size_t k = 0; k < tokens.size(); ++k) {
      if (k) out += ' ';
      out += tokens[k];
    }
    return utf8::sanitize(out);
  }
  decoder_->decode_chain(tokens, hf::DecodeMode{});
  for (const std::string& t : tokens) out += t;
  return utf8::sanitize(out);
}

std::string HfTokenizer::token_piece(int32_t id) const {
  std::vector<std::string> tokens{std::string(text_of(check_id(id)))};
  if (!decoder_) return tokens[0];
  decoder_->decode_chain(tokens, hf::DecodeMode{false, true});
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

json parse_optional_json(std::string_view text, const char* name) {
  if (text.empty()) return json();
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    fail(name, ": ", e.what());
  }
}

}  // namespace

std::unique_ptr<Tokenizer> make_hf_tokenizer(std::string_view tokenizer_json, std::string_view tokenizer_config_json,
                                             std::string_view generation_config_json) {
  hf::TokenizerFile f = hf::parse_tokenizer_json(tokenizer_json);
  const json config = parse_optional_json(tokenizer_config_json, "tokenizer_config.json");
  const json gen = parse_optional_json(generation_config_json, "generation_config.json");
  EV_CHECK(config.is_null() || config.is_object(), "tokenizer_config.json: not an object");
  return std::make_unique<HfTokenizer>(std::move(f), config, gen);
}

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& model_dir) {
  namespace fs = std::filesystem;
  const std::string path = (fs::path(model_dir) / "tokenizer.json").string();
  EV_CHECK(fs::exists(path), "tokenizer: ", path, " does not exist");
  auto optional = [&](const char* name) {
    const fs::path p = fs::path(model_dir) / name;
    return fs::exists(p) ? read_text_file(p.string()) : std::string();
  };
  const std::string config = optional("tokenizer_config.json");
  const std::string gen = optional("generation_config.json");
  const MappedFile file(path);
  try {
    return make_hf_tokenizer(std::string_view(reinterpret_cast<const char*>(file.data()), file.size()), config, gen);
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
}

}  // namespace edgevl::text
