// The BPE merge loop shared by the SentencePiece-by-score and the merges-by-rank tokenizers,
// and a small open-addressing hash for (left id, right id) -> merge lookups. Internal to text/.
#pragma once
#include <algorithm>
#include <array>
#include <cstdlib>
#include <new>
#include <utility>
#include <sys/mman.h>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace edgevl::text::detail {

// A symbol of the word being merged: a byte span of the input and the token it currently is
// (-1: not a vocabulary entry, e.g. a character that will go through byte fallback).
struct Symbol {
  int32_t prev, next;
  uint32_t start, len;  // len == 0: merged into its left neighbour
  int32_t id;
};

// A candidate merge of two adjacent symbols. Lower cost merges first, ties go to the leftmost
// pair (SentencePiece and Hugging Face BPE agree on both rules).
struct Candidate {
  double cost;
  int32_t left, right;
  uint32_t size;  // left.len + right.len when queued: detects stale entries
  int32_t id;     // the merged token
};

// Merges `syms` (a doubly linked list in index order) in place. `find(left, right, &cost, &id)`
// says whether two adjacent symbols merge and into what. O(n log n) with a binary heap; stale
// heap entries are skipped lazily. `heap` is scratch storage reused between calls.
template <typename Find>
void bpe_merge(std::vector<Symbol>& syms, std::vector<Candidate>& heap, Find&& find) {
  auto worse = [](const Candidate& a, const Candidate& b) {
    return a.cost != b.cost ? a.cost > b.cost : a.left > b.left;
  };
  // A short word (the common case): each symbol keeps the cost of merging with its right
  // neighbour and every step scans for the cheapest, leftmost on ties. No heap, no stale entries,
  // and the first look-ups are independent, so their cache misses overlap.
  constexpr size_t kShort = 32;
  if (syms.size() <= kShort) {
    double cost[kShort];
    int32_t merged[kShort];
    bool can[kShort];
    auto eval = [&](int32_t k) {
      const int32_t r = syms[k].next;
      can[k] = r >= 0 && find(syms[k], syms[r], &cost[k], &merged[k]);
    };
    for (size_t k = 0; k < syms.size(); ++k) eval((int32_t)k);
    for (;;) {
      int32_t best = -1;
      double best_cost = 0;
      for (int32_t k = 0; k >= 0; k = syms[k].next) {
        if (can[k] && (best < 0 || cost[k] < best_cost)) {
          best_cost = cost[k];
          best = k;
        }
      }
      if (best < 0) return;
      Symbol& l = syms[best];
      Symbol& r = syms[l.next];
      l.len += r.len;
      l.id = merged[best];
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) syms[r.next].prev = best;
      eval(best);
      if (l.prev >= 0) eval(l.prev);
    }
  }
  heap.clear();
  auto try_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    double cost;
    int32_t id;
    if (!find(syms[l], syms[r], &cost, &id)) return;
    heap.push_back({cost, l, r, syms[l].len + syms[r].len, id});
    std::push_heap(heap.begin(), heap.end(), worse);
  };
  for (size_t i = 1; i < syms.size(); ++i) try_add((int32_t)i - 1, (int32_t)i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& l = syms[c.left];
    Symbol& r = syms[c.right];
    // Symbols only grow, so unchanged lengths and adjacency mean the pair is still the same.
    if (l.len == 0 || r.len == 0 || l.next != c.right || l.len + r.len != c.size) continue;
    l.len += r.len;
    l.id = c.id;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.left;
    try_add(l.prev, c.left);
    try_add(c.left, l.next);
  }
}

// An array of trivially copyable T for large hash tables: when it spans megabytes it is 2 MiB
// aligned and asks for transparent huge pages, so random probes over it do not miss the TLB
// (the BPE merge loop of a 500k-merge vocabulary probes a 16 MiB table).
template <typename T>
class TableArray {
 public:
  TableArray() = default;
  TableArray(const TableArray& o) { copy(o); }
  TableArray& operator=(const TableArray& o) {
    if (this != &o) copy(o);
    return *this;
  }
  TableArray(TableArray&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  TableArray& operator=(TableArray&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  ~TableArray() { std::free(p_); }
  void assign(size_t n, const T& v) {
    std::free(p_);
    p_ = nullptr;
    n_ = 0;
    if (n == 0) return;
    constexpr size_t kHuge = size_t{2} << 20;
    const size_t bytes = n * sizeof(T);
    if (bytes >= kHuge) {
      p_ = static_cast<T*>(std::aligned_alloc(kHuge, (bytes + kHuge - 1) / kHuge * kHuge));
      if (p_) ::madvise(p_, (bytes + kHuge - 1) / kHuge * kHuge, MADV_HUGEPAGE);
    } else {
      p_ = static_cast<T*>(std::malloc(bytes));
    }
    if (!p_) throw std::bad_alloc();
    n_ = n;
    std::fill(p_, p_ + n, v);
  }
  bool empty() const { return n_ == 0; }
  size_t size() const { return n_; }
  T& operator[](size_t i) { return p_[i]; }
  const T& operator[](size_t i) const { return p_[i]; }
  const T* begin() const { return p_; }
  const T* end() const { return p_ + n_; }

 private:
  void copy(const TableArray& o) {
    if (o.n_ == 0) {
      assign(0, T{});
      return;
    }
    assign(o.n_, o.p_[0]);
    std::memcpy(static_cast<void*>(p_), o.p_, o.n_ * sizeof(T));
  }
  T* p_ = nullptr;
  size_t n_ = 0;
};

// Open-addressing (linear probing) map from a 64-bit key to V, filled once then read-only. Key
// and value share a slot, so a look-up touches one cache line.
template <typename V>
class FlatMap64 {
 public:
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, Slot{kEmpty, V{}});
    mask_ = cap - 1;
  }
  // Keeps the first value for a key; returns false when the key was already present.
  bool insert(uint64_t key, const V& v) {
    if (slots_.empty() || (size_ + 1) * 2 > slots_.size()) grow();
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.key == kEmpty) {
        s = {key, v};
        ++size_;
        return true;
      }
      if (s.key == key) return false;
    }
  }
  // Starts loading the slot of `key` into the cache (a batch of inserts or look-ups ahead).
  // always_inline: GCC 12 takes a function whose only effect is __builtin_prefetch for a const
  // function once it is not inlined early, and drops its calls.
  [[gnu::always_inline]] void prefetch(uint64_t key) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[hash(key) & mask_]);
  }
  const V* find(uint64_t key) const {
    if (slots_.empty()) return nullptr;
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key == key) return &s.val;
      if (s.key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // never a key: ids are < 2^31
  struct Slot {
    uint64_t key;
    V val;
  };
  static size_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k;
  }
  void grow() {
    TableArray<Slot> old = std::move(slots_);
    reserve(std::max<size_t>(16, old.size()));
    size_ = 0;
    for (const Slot& s : old)
      if (s.key != kEmpty) insert(s.key, s.val);
  }
  TableArray<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

// Open-addressing index from token string to id. It keeps its own copy of the strings, back to
// back, and a slot holds 32 bits of the string's hash, its id and where its bytes are: most misses
// cost no string compare and a hit touches one slot and the string itself. Several times faster
// than std::unordered_map<std::string_view, int32_t> on the BPE inner loop.
class StringIndex {
 public:
  static uint64_t hash(std::string_view s) {
    const char* p = s.data();
    size_t n = s.size();
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (n * 0xff51afd7ed558ccdULL);
    while (n >= 8) {
      uint64_t w;
      std::memcpy(&w, p, 8);
      h = (h ^ w) * 0x9FB21C651E98DF25ULL;
      h ^= h >> 29;
      p += 8;
      n -= 8;
    }
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h ^= w;
    h ^= h >> 33;  // murmur3 fmix64: every input bit reaches the low (index) bits
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
  }
  // Indexes strings[i] -> i; the first of duplicate strings wins.
  void build(const std::vector<std::string>& strings) { build(std::vector<std::string_view>(strings.begin(), strings.end())); }
  void build(const std::vector<std::string_view>& strings) {
    size_t bytes = 0;
    for (std::string_view s : strings) bytes += s.size();
    text_.resize(bytes);
    size_t cap = 16;
    while (cap < strings.size() * 2) cap <<= 1;
    slots_.assign(cap, Slot{0, -1, 0, 0});
    mask_ = cap - 1;
    // Hashes go in batches ahead of the probes, so the cache misses of many inserts overlap.
    constexpr size_t kBatch = 32;
    uint64_t hs[kBatch];
    size_t at = 0;
    for (size_t b = 0; b < strings.size(); b += kBatch) {
      const size_t m = std::min(kBatch, strings.size() - b);
      for (size_t j = 0; j < m; ++j) {
        hs[j] = hash(strings[b + j]);
        __builtin_prefetch(&slots_[hs[j] & mask_], 1);
      }
      for (size_t j = 0; j < m; ++j) {
        const std::string_view s = strings[b + j];
        if (!s.empty()) std::memcpy(text_.data() + at, s.data(), s.size());
        const uint64_t h = hs[j];
        for (size_t k = h & mask_;; k = (k + 1) & mask_) {
          Slot& sl = slots_[k];
          if (sl.id < 0) {
            sl = {tag(h), (int32_t)(b + j), (uint32_t)at, (uint32_t)s.size()};
            break;
          }
          if (sl.tag == tag(h) && equal(sl, s)) break;
        }
        at += s.size();
      }
    }
  }
  int32_t find(std::string_view s) const { return probe(s, hash(s)); }
  // find() for n strings at once: hashes first, then probes with the slots and strings
  // prefetched, so the cache misses of many look-ups overlap (loading a 500k-merge file).
  void find_many(const std::string_view* keys, size_t n, int32_t* ids) const {
    constexpr size_t kBatch = 32;
    uint64_t h[kBatch];
    for (size_t b = 0; b < n; b += kBatch) {
      const size_t m = std::min(kBatch, n - b);
      for (size_t i = 0; i < m; ++i) {
        h[i] = hash(keys[b + i]);
        __builtin_prefetch(&slots_[h[i] & mask_]);
      }
      for (size_t i = 0; i < m; ++i) {
        const Slot& sl = slots_[h[i] & mask_];
        if (sl.id >= 0) __builtin_prefetch(text_.data() + sl.off);
      }
      for (size_t i = 0; i < m; ++i) ids[b + i] = probe(keys[b + i], h[i]);
    }
  }

 private:
  struct Slot {
    uint32_t tag;
    int32_t id;  // -1: empty
    uint32_t off, len;  // the string in text_
  };
  static uint32_t tag(uint64_t h) { return (uint32_t)(h >> 32); }
  bool equal(const Slot& sl, std::string_view s) const {
    return sl.len == s.size() && (s.empty() || std::memcmp(text_.data() + sl.off, s.data(), s.size()) == 0);
  }
  int32_t probe(std::string_view s, uint64_t h) const {
    for (size_t k = h & mask_;; k = (k + 1) & mask_) {
      const Slot& sl = slots_[k];
      if (sl.id < 0) return -1;
      if (sl.tag == tag(h) && equal(sl, s)) return sl.id;
    }
  }
  std::string text_;
  std::vector<Slot> slots_{Slot{0, -1, 0, 0}};  // one empty slot: find() before build() finds nothing
  size_t mask_ = 0;
};

inline uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

// GPT-2's byte -> printable code point table (bytes_to_unicode in the GPT-2 encoder): printable
// Latin-1 bytes map to themselves, the other 68 bytes to U+0100.. in byte order. Byte-level BPE
// vocabularies are written in this alphabet.
inline std::array<uint32_t, 256> gpt2_byte_to_codepoint() {
  std::array<uint32_t, 256> t{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    t[b] = printable ? b : next++;
  }
  return t;
}

// "<0x41>" -> 0x41 (either hex case), or -1: SentencePiece's byte-fallback token names.
inline int parse_byte_token_name(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  int v = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = t[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else return -1;
  }
  return v;
}

// The code point of the valid n-byte UTF-8 character at s[i] (the caller checked validity with
// utf8::valid_char_len).
inline uint32_t utf8_codepoint_at(std::string_view s, size_t i, size_t n) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data() + i);
  if (n == 1) return p[0];
  if (n == 2) return ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
  if (n == 3) return ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
  return ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
}

// Byte trie of a fixed set of strings, each with a value >= 0, answering "the longest of the
// strings that starts at text[i]" (the leftmost-longest rule of Hugging Face's added tokens when
// scanned from the left). Built once, then read-only.
class ByteTrie {
 public:
  // The first value given for a string is kept.
  void add(std::string_view s, int32_t value) {
    if (s.empty()) return;
    if (value_.empty()) value_.push_back(-1);  // the root
    starts_[(uint8_t)s[0]] = 1;
    int32_t node = 0;
    for (char c : s) {
      const uint64_t key = edge(node, c);
      if (const int32_t* child = edges_.find(key)) {
        node = *child;
        continue;
      }
      const auto fresh = (int32_t)value_.size();
      value_.push_back(-1);
      edges_.insert(key, fresh);
      node = fresh;
    }
    if (value_[node] < 0) value_[node] = value;
  }
  bool empty() const { return value_.empty(); }
  bool may_start(uint8_t b) const { return starts_[b] != 0; }
  // Length of the longest string at text[i] (0: none) and its value in *value.
  size_t longest(std::string_view text, size_t i, int32_t* value) const {
    return longest(text, i, [](int32_t) { return true; }, value);
  }
  // The same among the strings whose value `accept` takes.
  template <typename Accept>
  size_t longest(std::string_view text, size_t i, Accept&& accept, int32_t* value) const {
    size_t best = 0;
    int32_t node = 0;
    for (size_t j = i; j < text.size(); ++j) {
      const int32_t* child = edges_.find(edge(node, text[j]));
      if (!child) break;
      node = *child;
      if (value_[node] >= 0 && accept(value_[node])) {
        best = j + 1 - i;
        *value = value_[node];
      }
    }
    return best;
  }

 private:
  static uint64_t edge(int32_t node, char c) { return ((uint64_t)(uint32_t)node << 8) | (uint8_t)c; }
  std::vector<int32_t> value_;  // per node: the value of the string ending there, or -1
  FlatMap64<int32_t> edges_;    // (node << 8 | byte) -> child
  std::array<uint8_t, 256> starts_{};
};

}  // namespace edgevl::text::detail
