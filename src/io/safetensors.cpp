// safetensors: u64 LE header length N, N bytes of JSON
//   {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
// then the data section; offsets are relative to its start (byte 8 + N). Every field is validated
// before a TensorRef is handed out: a bad file raises Error("safetensors: <path>: <problem>").
#include "io/safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace edgevl::safetensors {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr size_t kMaxDims = 32;

struct DTypeName {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeName kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4}, {DType::I16, "I16", 2}, {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},   {DType::BOOL, "BOOL", 1},
};

size_t elem_size(DType t) {
  for (const auto& d : kDTypes)
    if (d.dtype == t) return d.size;
  return 0;
}

// Parses JSON with a nesting bound and rejects duplicate keys at any level (nlohmann would keep
// the last silently; two different readers of one file must not see different tensors).
json parse_json_strict(const char* begin, const char* end, const std::string& what) {
  std::vector<std::set<std::string>> keys;
  auto cb = [&](int depth, json::parse_event_t ev, json& j) -> bool {
    switch (ev) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= kMaxJsonDepth) fail(what, ": JSON nested deeper than ", kMaxJsonDepth, " levels");
        if (ev == json::parse_event_t::object_start) keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && j.is_string() && !keys.back().insert(j.get<std::string>()).second)
          fail(what, ": duplicate JSON key '", j.get<std::string>(), "'");
        break;
      default: break;
    }
    return true;
  };
  try {
    return json::parse(begin, end, cb);
  } catch (const json::exception& e) {
    fail(what, ": invalid JSON: ", e.what());
  }
}

bool get_u64(const json& j, uint64_t& out) {
  if (!j.is_number_unsigned()) {
    if (j.is_number_integer() && j.get<int64_t>() >= 0) {
      out = static_cast<uint64_t>(j.get<int64_t>());
      return true;
    }
    return false;
  }
  out = j.get<uint64_t>();
  return true;
}

// Streams to `<path>.tmp`, then fsyncs and renames over `path`; removes the temp file on failure.
class AtomicStream {
 public:
  explicit AtomicStream(const std::string& path) : path_(path), tmp_(path + ".tmp") {
    f_ = std::fopen(tmp_.c_str(), "wb");
    EV_CHECK(f_, "safetensors: ", tmp_, ": cannot create: ", std::strerror(errno));
  }
  ~AtomicStream() {
    if (f_) {
      std::fclose(f_);
      std::remove(tmp_.c_str());
    }
  }
  void write(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n) fail("safetensors: ", path_, ": write failed: ", std::strerror(errno));
  }
  void commit() {
    bool ok = std::fflush(f_) == 0;
    ok = ::fsync(fileno(f_)) == 0 && ok;
    ok = std::fclose(f_) == 0 && ok;
    f_ = nullptr;
    if (!ok) {
      std::remove(tmp_.c_str());
      fail("safetensors: ", path_, ": write failed: ", std::strerror(errno));
    }
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
      int e = errno;
      std::remove(tmp_.c_str());
      fail("safetensors: ", path_, ": rename failed: ", std::strerror(e));
    }
  }

 private:
  std::string path_, tmp_;
  FILE* f_ = nullptr;
};

}  // namespace

const char* dtype_to_safetensors(DType t) {
  for (const auto& d : kDTypes)
    if (d.dtype == t) return d.name;
  return nullptr;
}

std::optional<DType> dtype_from_safetensors(std::string_view name) {
  for (const auto& d : kDTypes)
    if (name == d.name) return d.dtype;
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// File

std::unique_ptr<File> File::open(const std::string& path) {
  std::unique_ptr<File> f(new File());
  try {
    f->map_ = std::make_unique<MappedFile>(path);
  } catch (const Error& e) {
    fail("safetensors: ", e.what());
  }
  f->path_ = path;
  f->base_ = f->map_->data();
  f->size_ = f->map_->size();
  f->parse();
  return f;
}

std::unique_ptr<File> File::open_memory(const void* data, size_t size, const std::string& name) {
  std::unique_ptr<File> f(new File());
  f->path_ = name;
  f->base_ = static_cast<const uint8_t*>(data);
  f->size_ = size;
  f->parse();
  return f;
}

void File::parse() {
  const std::string where = "safetensors: " + path_;
  auto error = [&](auto&&... parts) { fail(where, ": ", parts...); };
  if (size_ < 8) error("file of ", size_, " bytes is too small for the 8-byte header length");
  uint64_t n;
  std::memcpy(&n, base_, 8);  // little-endian host assumed (x86, ARM64)
  if (n > kMaxHeaderBytes) error("header length ", n, " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  if (n > size_ - 8) error("header length ", n, " runs past the end of the file (", size_, " bytes)");
  data_offset_ = 8 + n;
  const uint64_t data_size = size_ - data_offset_;

  const char* hb = reinterpret_cast<const char*>(base_ + 8);
  json header = parse_json_strict(hb, hb + n, where);
  if (!header.is_object()) error("header is not a JSON object");

  struct Span {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) error("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) error("__metadata__ value '", m.key(), "' is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) error("tensor '", name, "': entry is not an object");
    auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) error("tensor '", name, "': missing or non-string dtype");
    std::optional<DType> dtype = dtype_from_safetensors(dt->get<std::string>());
    if (!dtype) error("tensor '", name, "': unsupported dtype '", dt->get<std::string>(), "'");
    auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) error("tensor '", name, "': missing shape");
    if (sh->size() > kMaxDims) error("tensor '", name, "': ", sh->size(), " dimensions (at most ", kMaxDims, ")");
    TensorRef t;
    t.name = name;
    t.dtype = *dtype;
    uint64_t numel = 1;
    for (const json& d : *sh) {
      uint64_t x;
      if (!get_u64(d, x) || x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        error("tensor '", name, "': shape entry ", d.dump(), " is not a non-negative integer");
      t.shape.push_back(static_cast<int64_t>(x));
      if (__builtin_mul_overflow(numel, x, &numel)) error("tensor '", name, "': element count overflows");
    }
    auto off = v.find("data_offsets");
    uint64_t b = 0, e = 0;
    if (off == v.end() || !off->is_array() || off->size() != 2 || !get_u64((*off)[0], b) || !get_u64((*off)[1], e))
      error("tensor '", name, "': data_offsets must be [begin, end] with non-negative integers");
    if (b > e || e > data_size)
      error("tensor '", name, "': data_offsets [", b, ", ", e, "] lie outside the data section of ", data_size, " bytes");
    uint64_t want;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(elem_size(t.dtype)), &want) || want != e - b)
      error("tensor '", name, "': ", e - b, " bytes for ", numel, " elements of ", dt->get<std::string>(),
            " (expected ", numel * elem_size(t.dtype), ")");
    t.data = base_ + data_offset_ + b;
    t.nbytes = static_cast<size_t>(e - b);
    spans.push_back({b, e, tensors_.size()});
    tensors_.push_back(std::move(t));
  }

  // File order (by offset), and no two tensors sharing bytes.
  std::sort(spans.begin(), spans.end(), [&](const Span& x, const Span& y) {
    return x.begin != y.begin ? x.begin < y.begin : x.end < y.end;
  });
  const Span* prev = nullptr;
  for (const Span& s : spans) {
    if (s.begin == s.end) continue;
    if (prev && s.begin < prev->end)
      error("tensors '", tensors_[prev->index].name, "' and '", tensors_[s.index].name, "' overlap");
    prev = &s;
  }
  std::vector<TensorRef> ordered;
  ordered.reserve(tensors_.size());
  for (const Span& s : spans) ordered.push_back(std::move(tensors_[s.index]));
  tensors_ = std::move(ordered);
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
}

const TensorRef* File::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

// ---------------------------------------------------------------------------------------------
// Collection

std::unique_ptr<Collection> Collection::open(const std::string& path) {
  auto c = std::make_unique<Collection>();
  std::error_code ec;
  fs::path p(path);
  fs::path index_path;
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "model.safetensors.index.json", ec)) {
      index_path = p / "model.safetensors.index.json";
    } else if (fs::exists(p / "model.safetensors", ec)) {
      c->files_.push_back(File::open((p / "model.safetensors").string()));
    } else {
      fail("safetensors: ", path, ": folder has neither model.safetensors nor model.safetensors.index.json");
    }
  } else if (p.extension() == ".json") {
    index_path = p;
  } else {
    c->files_.push_back(File::open(path));
  }

  std::vector<std::pair<std::string, std::string>> weight_map;  // tensor -> shard file name
  if (!index_path.empty()) {
    const std::string ip = index_path.string();
    std::string text;
    try {
      text = read_text_file(ip);
    } catch (const Error& e) {
      fail("safetensors: ", e.what());
    }
    json idx = parse_json_strict(text.data(), text.data() + text.size(), "safetensors: " + ip);
    if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object())
      fail("safetensors: ", ip, ": no weight_map object");
    std::vector<std::string> shards;
    for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
      if (!it.value().is_string()) fail("safetensors: ", ip, ": weight_map entry '", it.key(), "' is not a string");
      std::string shard = it.value().get<std::string>();
      fs::path sp(shard);
      bool bad = shard.empty() || sp.is_absolute();
      for (const auto& part : sp) bad = bad || part == "..";
      if (bad) fail("safetensors: ", ip, ": tensor '", it.key(), "' names an invalid shard path '", shard, "'");
      weight_map.emplace_back(it.key(), shard);
      shards.push_back(shard);
    }
    std::sort(shards.begin(), shards.end());
    shards.erase(std::unique(shards.begin(), shards.end()), shards.end());
    fs::path dir = index_path.parent_path();
    for (const auto& s : shards) {
      fs::path sp = dir / s;
      if (!fs::exists(sp, ec)) fail("safetensors: ", ip, ": shard '", s, "' listed in the index is missing");
      c->files_.push_back(File::open(sp.string()));
    }
  }

  std::map<std::string, std::string> tensor_file;
  for (const auto& f : c->files_) {
    for (const TensorRef& t : f->tensors()) {
      auto [it, fresh] = c->index_.emplace(t.name, &t);
      if (!fresh)
        fail("safetensors: ", f->path(), ": tensor '", t.name, "' is also in ", tensor_file[t.name]);
      tensor_file[t.name] = f->path();
    }
  }
  for (const auto& [name, shard] : weight_map) {
    auto it = tensor_file.find(name);
    std::string want = (index_path.parent_path() / shard).string();
    if (it == tensor_file.end() || it->second != want)
      fail("safetensors: ", want, ": tensor '", name, "' listed in the index is not in this shard");
  }
  return c;
}

const TensorRef* Collection::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::vector<const TensorRef*> Collection::tensors() const {
  std::vector<const TensorRef*> out;
  for (const auto& f : files_)
    for (const TensorRef& t : f->tensors()) out.push_back(&t);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writer

void Writer::set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

void Writer::add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data, size_t nbytes) {
  EV_CHECK(!name.empty() && name != "__metadata__", "safetensors writer: invalid tensor name '", name, "'");
  for (const auto& t : tensors_) EV_CHECK(t.name != name, "safetensors writer: duplicate tensor '", name, "'");
  size_t es = elem_size(dtype);
  EV_CHECK(es != 0, "safetensors writer: tensor '", name, "': dtype ", dtype_name(dtype), " has no safetensors name");
  uint64_t numel = 1;
  for (int64_t d : shape) {
    EV_CHECK(d >= 0, "safetensors writer: tensor '", name, "' has a negative dimension");
    EV_CHECK(!__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel), "safetensors writer: tensor '", name,
             "' is too large");
  }
  EV_CHECK(numel * es == nbytes, "safetensors writer: tensor '", name, "' has ", nbytes, " bytes, ", numel * es,
           " expected");
  EV_CHECK(data || nbytes == 0, "safetensors writer: tensor '", name, "' has no data");
  tensors_.push_back({name, dtype, std::move(shape), data, nbytes, nullptr});
}

void Writer::add(const std::string& name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
  auto owned = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  add(name, dtype, std::move(shape), owned->data(), owned->size());
  tensors_.back().owned = std::move(owned);
}

void Writer::add_f32(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& values) {
  std::vector<uint8_t> bytes(values.size() * sizeof(float));
  if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  add(name, DType::F32, std::move(shape), std::move(bytes));
}

void Writer::add_i64(const std::string& name, std::vector<int64_t> shape, const std::vector<int64_t>& values) {
  std::vector<uint8_t> bytes(values.size() * sizeof(int64_t));
  if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  add(name, DType::I64, std::move(shape), std::move(bytes));
}

void Writer::write(const std::string& path) const {
  // Data in name order (the header is a JSON object, which nlohmann keeps sorted by name too).
  std::vector<const Pending*> order;
  for (const auto& t : tensors_) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const Pending* a, const Pending* b) { return a->name < b->name; });

  json header = json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const Pending* t : order) {
    header[t->name] = {{"dtype", dtype_to_safetensors(t->dtype)},
                       {"shape", t->shape},
                       {"data_offsets", {offset, offset + t->nbytes}}};
    offset += t->nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {  // e.g. a name or metadata value that is not UTF-8
    fail("safetensors writer: ", path, ": ", e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // HF pads the header with spaces to 8 bytes
  uint64_t n = text.size();
  uint8_t len[8];
  std::memcpy(len, &n, 8);

  AtomicStream out(path);
  out.write(len, 8);
  out.write(text.data(), text.size());
  for (const Pending* t : order) out.write(t->data, t->nbytes);
  out.commit();
}

}  // namespace edgevl::safetensors
