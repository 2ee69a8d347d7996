// GGUF reader and writer. Layout (little-endian, v2 and v3 are identical on disk):
//   "GGUF" u32:version u64:n_tensors u64:n_kv
//   n_kv × (string key, u32 type, value)            string = u64 length + bytes (no NUL)
//   n_tensors × (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset)
//   padding to general.alignment, then the data section; offsets are relative to its start.
// Every read below is bounds-checked against the bytes left; every count is bounded by those bytes
// before anything is allocated, so a hostile header cannot make us allocate or loop for long.
#include "io/gguf.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace edgevl::gguf {

namespace {

constexpr uint8_t kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr uint32_t kNumValueTypes = 13;
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint64_t kMaxAlignment = 1ull << 30;

// Bytes one element of type t takes at least in the file (strings and arrays: their headers).
size_t min_encoded_size(ValueType t) {
  switch (t) {
    case ValueType::UINT8: case ValueType::INT8: case ValueType::BOOL: return 1;
    case ValueType::UINT16: case ValueType::INT16: return 2;
    case ValueType::UINT32: case ValueType::INT32: case ValueType::FLOAT32: return 4;
    case ValueType::UINT64: case ValueType::INT64: case ValueType::FLOAT64: return 8;
    case ValueType::STRING: return 8;
    case ValueType::ARRAY: return 12;
  }
  return 1;
}

bool is_unsigned_type(ValueType t) {
  return t == ValueType::UINT8 || t == ValueType::UINT16 || t == ValueType::UINT32 || t == ValueType::UINT64;
}
bool is_signed_type(ValueType t) {
  return t == ValueType::INT8 || t == ValueType::INT16 || t == ValueType::INT32 || t == ValueType::INT64;
}

uint32_t bswap32(uint32_t v) {
  return (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24);
}

bool is_pow2(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// Bounds-checked little-endian cursor over the file image. Host is assumed little-endian (x86,
// ARM64); a big-endian host would need byte swaps here.
class Cursor {
 public:
  Cursor(const uint8_t* p, size_t n, const std::string& path) : p_(p), n_(n), path_(path) {}

  template <typename... Args>
  [[noreturn]] void error(Args&&... args) const {
    fail("gguf: ", path_, ": ", std::forward<Args>(args)...);
  }

  size_t pos() const { return pos_; }
  size_t remaining() const { return n_ - pos_; }

  void need(size_t bytes, const char* what) const {
    if (bytes > remaining())
      error("truncated file: ", what, " at offset ", pos_, " needs ", bytes, " bytes, only ", remaining(), " left");
  }

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* what, size_t max_len) {
    uint64_t len = read<uint64_t>(what);
    if (len > max_len) error(what, " length ", len, " exceeds the limit of ", max_len, " bytes");
    if (len > remaining())
      error("truncated file: ", what, " of ", len, " bytes at offset ", pos_, ", only ", remaining(), " left");
    std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& path_;
};

class MetaParser {
 public:
  explicit MetaParser(Cursor& c) : c_(c) {}

  Value read_value(ValueType t, int depth, const std::string& key) {
    Value v;
    v.type = t;
    switch (t) {
      case ValueType::UINT8: v.scalar = uint64_t{c_.read<uint8_t>("value")}; break;
      case ValueType::INT8: v.scalar = int64_t{c_.read<int8_t>("value")}; break;
      case ValueType::UINT16: v.scalar = uint64_t{c_.read<uint16_t>("value")}; break;
      case ValueType::INT16: v.scalar = int64_t{c_.read<int16_t>("value")}; break;
      case ValueType::UINT32: v.scalar = uint64_t{c_.read<uint32_t>("value")}; break;
      case ValueType::INT32: v.scalar = int64_t{c_.read<int32_t>("value")}; break;
      case ValueType::UINT64: v.scalar = uint64_t{c_.read<uint64_t>("value")}; break;
      case ValueType::INT64: v.scalar = int64_t{c_.read<int64_t>("value")}; break;
      case ValueType::FLOAT32: v.scalar = double{c_.read<float>("value")}; break;
      case ValueType::FLOAT64: v.scalar = c_.read<double>("value"); break;
      case ValueType::BOOL: v.scalar = c_.read<uint8_t>("value") != 0; break;
      case ValueType::STRING: v.scalar = c_.read_string("string value", std::numeric_limits<size_t>::max()); break;
      case ValueType::ARRAY: read_array(v, depth, key); break;
    }
    return v;
  }

 private:
  void read_array(Value& v, int depth, const std::string& key) {
    uint32_t et = c_.read<uint32_t>("array element type");
    if (et >= kNumValueTypes) c_.error("key '", key, "': unknown array element type ", et);
    v.elem_type = static_cast<ValueType>(et);
    if (v.elem_type == ValueType::ARRAY && depth + 1 >= kMaxArrayDepth)
      c_.error("key '", key, "': arrays nested deeper than ", kMaxArrayDepth, " levels");
    uint64_t n = c_.read<uint64_t>("array length");
    // Every element takes at least min_encoded_size bytes, so a count beyond that is a lie.
    if (n > c_.remaining() / min_encoded_size(v.elem_type))
      c_.error("key '", key, "': truncated or corrupt: array of ", n, " ", value_type_name(v.elem_type),
               " elements cannot fit in the ", c_.remaining(), " bytes left");
    values_ += n;
    if (values_ > kMaxValues)
      c_.error("key '", key, "': more than ", kMaxValues, " metadata array elements in total");
    v.array.reserve(static_cast<size_t>(n));
    for (uint64_t i = 0; i < n; ++i) v.array.push_back(read_value(v.elem_type, depth + 1, key));
  }

  Cursor& c_;
  uint64_t values_ = 0;
};

[[noreturn]] void type_error(const Value& v, const char* want) {
  fail("value of type ", value_type_name(v.type), " is not ", want);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Value

const char* value_type_name(ValueType t) {
  switch (t) {
    case ValueType::UINT8: return "uint8";
    case ValueType::INT8: return "int8";
    case ValueType::UINT16: return "uint16";
    case ValueType::INT16: return "int16";
    case ValueType::UINT32: return "uint32";
    case ValueType::INT32: return "int32";
    case ValueType::FLOAT32: return "float32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::UINT64: return "uint64";
    case ValueType::INT64: return "int64";
    case ValueType::FLOAT64: return "float64";
  }
  return "unknown";
}

bool Value::is_integer() const { return is_unsigned_type(type) || is_signed_type(type); }

int64_t Value::as_int() const {
  if (!is_integer() && type != ValueType::BOOL) type_error(*this, "an integer");
  if (const auto* u = std::get_if<uint64_t>(&scalar)) {
    EV_CHECK(*u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), "value ", *u, " does not fit in int64");
    return static_cast<int64_t>(*u);
  }
  if (const auto* i = std::get_if<int64_t>(&scalar)) return *i;
  if (const auto* b = std::get_if<bool>(&scalar)) return *b ? 1 : 0;
  fail("integer value of type ", value_type_name(type), " holds no integer");
}

double Value::as_float() const {
  if (const auto* d = std::get_if<double>(&scalar); d && is_float()) return *d;
  if (is_integer()) {
    if (const auto* u = std::get_if<uint64_t>(&scalar)) return static_cast<double>(*u);
    if (const auto* i = std::get_if<int64_t>(&scalar)) return static_cast<double>(*i);
  }
  type_error(*this, "a number");
}

bool Value::as_bool() const {
  if (type != ValueType::BOOL) type_error(*this, "a bool");
  if (const auto* b = std::get_if<bool>(&scalar)) return *b;
  if (const auto* u = std::get_if<uint64_t>(&scalar)) return *u != 0;
  if (const auto* i = std::get_if<int64_t>(&scalar)) return *i != 0;
  type_error(*this, "a bool");
}

const std::string& Value::as_string() const {
  const auto* s = std::get_if<std::string>(&scalar);
  if (type != ValueType::STRING || !s) type_error(*this, "a string");
  return *s;
}

Value make_string(const std::string& s) {
  Value v;
  v.type = ValueType::STRING;
  v.scalar = s;
  return v;
}
Value make_u32(uint32_t x) { return make_int(ValueType::UINT32, x); }
Value make_u64(uint64_t x) {
  Value v;
  v.type = ValueType::UINT64;
  v.scalar = x;
  return v;
}
Value make_f32(float x) { return make_scalar(ValueType::FLOAT32, x); }
Value make_bool(bool b) {
  Value v;
  v.type = ValueType::BOOL;
  v.scalar = b;
  return v;
}
Value make_int(ValueType t, int64_t x) {
  Value v;
  v.type = t;
  if (t == ValueType::BOOL) {
    v.scalar = x != 0;
  } else {
    EV_CHECK(is_unsigned_type(t) || is_signed_type(t), "gguf: make_int: ", value_type_name(t), " is not an integer type");
    if (is_unsigned_type(t)) {
      EV_CHECK(x >= 0, "gguf: make_int: negative value ", x, " for ", value_type_name(t));
      v.scalar = static_cast<uint64_t>(x);
    } else {
      v.scalar = x;
    }
  }
  return v;
}
Value make_scalar(ValueType t, double x) {
  if (t == ValueType::FLOAT32 || t == ValueType::FLOAT64) {
    Value v;
    v.type = t;
    v.scalar = t == ValueType::FLOAT32 ? static_cast<double>(static_cast<float>(x)) : x;
    return v;
  }
  EV_CHECK(std::isfinite(x) && x == std::floor(x) && std::fabs(x) < 9.2e18, "gguf: make_scalar: ", x,
           " is not an integer for ", value_type_name(t));
  return make_int(t, static_cast<int64_t>(x));
}
Value make_array(ValueType elem_type, std::vector<Value> elems) {
  Value v;
  v.type = ValueType::ARRAY;
  v.elem_type = elem_type;
  v.array = std::move(elems);
  return v;
}

// ---------------------------------------------------------------------------------------------
// File

std::unique_ptr<File> File::open(const std::string& path) {
  std::unique_ptr<File> f(new File());
  try {
    f->map_ = std::make_unique<MappedFile>(path);
  } catch (const Error& e) {
    fail("gguf: ", e.what());
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
  Cursor c(base_, size_, path_);
  if (size_ < 4 || std::memcmp(base_, kMagic, 4) != 0) c.error("not a GGUF file (bad magic)");
  c.read<uint32_t>("magic");
  version_ = c.read<uint32_t>("version");
  if (version_ == 1) c.error("GGUF version 1 is not supported (only versions 2 and 3)");
  if (version_ != 2 && version_ != 3) {
    uint32_t swapped = bswap32(version_);
    if (swapped >= 1 && swapped <= 3) c.error("big-endian GGUF files are not supported (version bytes are swapped)");
    c.error("unsupported GGUF version ", version_, " (only versions 2 and 3)");
  }
  uint64_t n_tensors = c.read<uint64_t>("tensor count");
  uint64_t n_kv = c.read<uint64_t>("metadata count");
  // A key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info 24.
  if (n_kv > c.remaining() / 13)
    c.error("truncated or corrupt: metadata count ", n_kv, " cannot fit in the ", c.remaining(), " bytes left");
  if (n_tensors > c.remaining() / 24)
    c.error("truncated or corrupt: tensor count ", n_tensors, " cannot fit in the ", c.remaining(), " bytes left");

  MetaParser meta(c);
  kv_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string("metadata key", kMaxKeyLen);
    uint32_t t = c.read<uint32_t>("metadata type");
    if (t >= kNumValueTypes) c.error("key '", key, "': unknown value type ", t);
    if (kv_index_.count(key)) c.error("duplicate metadata key '", key, "'");
    Value v = meta.read_value(static_cast<ValueType>(t), 0, key);
    kv_index_.emplace(key, kv_.size());
    kv_.emplace_back(std::move(key), std::move(v));
  }

  alignment_ = kDefaultAlignment;
  if (const Value* a = find("general.alignment")) {
    if (!a->is_integer()) c.error("general.alignment has type ", value_type_name(a->type), ", expected an integer");
    int64_t al = a->as_int();
    if (al <= 0 || !is_pow2(static_cast<uint64_t>(al)) || static_cast<uint64_t>(al) > kMaxAlignment)
      c.error("general.alignment ", al, " is not a power of two between 1 and ", kMaxAlignment);
    alignment_ = static_cast<uint64_t>(al);
  }

  struct Info {
    uint64_t offset;
    size_t nbytes;
  };
  std::vector<Info> infos;
  infos.reserve(static_cast<size_t>(n_tensors));
  tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorRef t;
    t.name = c.read_string("tensor name", kMaxNameLen);
    if (tensor_index_.count(t.name)) c.error("duplicate tensor name '", t.name, "'");
    uint32_t n_dims = c.read<uint32_t>("tensor dimension count");
    if (n_dims > kMaxDims) c.error("tensor '", t.name, "' has ", n_dims, " dimensions (at most ", kMaxDims, ")");
    int64_t ne[kMaxDims] = {1, 1, 1, 1};
    uint64_t nonzero_numel = 1;  // product of the nonzero dims: must fit in int64 for shape math
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t v = c.read<uint64_t>("tensor dimension");
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        c.error("tensor '", t.name, "' dimension ", d, " is ", v, " (negative or too large)");
      if (v != 0 && (__builtin_mul_overflow(nonzero_numel, v, &nonzero_numel) ||
                     nonzero_numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())))
        c.error("tensor '", t.name, "' has too many elements (overflow)");
      ne[d] = static_cast<int64_t>(v);
    }
    uint32_t type_id = c.read<uint32_t>("tensor type");
    uint64_t offset = c.read<uint64_t>("tensor offset");

    std::optional<DTypeInfo> info;
    if (type_id < 1000) info = dtype_info(static_cast<DType>(type_id));
    if (!info) c.error("tensor '", t.name, "' has unknown or unsupported ggml type id ", type_id);
    t.dtype = static_cast<DType>(type_id);
    if (ne[0] % info->block_size != 0)
      c.error("tensor '", t.name, "' row length ", ne[0], " is not a multiple of the ", info->name, " block size ",
              info->block_size);
    uint64_t rows = static_cast<uint64_t>(ne[1]) * static_cast<uint64_t>(ne[2]) * static_cast<uint64_t>(ne[3]);
    if (ne[0] == 0) rows = 0;  // (zero dims make every product zero; nonzero ones are bounded above)
    uint64_t blocks_per_row = static_cast<uint64_t>(ne[0] / info->block_size);
    uint64_t row_b = 0, total = 0;
    if (__builtin_mul_overflow(blocks_per_row, static_cast<uint64_t>(info->block_bytes), &row_b) ||
        __builtin_mul_overflow(row_b, rows, &total) || total > size_)
      c.error("tensor '", t.name, "' size exceeds the file size ", size_);
    size_t nbytes = rows == 0 ? 0 : row_bytes(t.dtype, ne[0]) * static_cast<size_t>(rows);
    if (nbytes != total) c.error("tensor '", t.name, "' size mismatch (internal)");
    if (offset % alignment_ != 0)
      c.error("tensor '", t.name, "' offset ", offset, " is not a multiple of the alignment ", alignment_);
    t.nbytes = nbytes;
    for (int d = static_cast<int>(n_dims) - 1; d >= 0; --d) t.shape.push_back(ne[d]);
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
    infos.push_back({offset, nbytes});
  }

  // The data section starts at the next multiple of the alignment. A file without tensors may
  // end right after its header (no padding).
  uint64_t data_start = (static_cast<uint64_t>(c.pos()) + alignment_ - 1) / alignment_ * alignment_;
  if (n_tensors == 0) data_start = std::min<uint64_t>(data_start, size_);
  if (data_start > size_) c.error("truncated file: data section at offset ", data_start, " is past the end (", size_, " bytes)");
  data_offset_ = data_start;
  uint64_t data_size = size_ - data_start;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (infos[i].offset > data_size || infos[i].nbytes > data_size - infos[i].offset)
      c.error("tensor '", tensors_[i].name, "' (offset ", infos[i].offset, ", ", infos[i].nbytes,
              " bytes) extends past the end of the file");
    tensors_[i].data = base_ + data_start + infos[i].offset;
  }

  // No two tensors may share bytes.
  std::vector<size_t> order(tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return infos[a].offset < infos[b].offset; });
  uint64_t end = 0;
  size_t prev = SIZE_MAX;
  for (size_t i : order) {
    if (infos[i].nbytes == 0) continue;
    if (prev != SIZE_MAX && infos[i].offset < end)
      c.error("tensors '", tensors_[prev].name, "' and '", tensors_[i].name, "' overlap");
    end = infos[i].offset + infos[i].nbytes;
    prev = i;
  }
}

const Value* File::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const TensorRef* File::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

template <typename T, typename F>
std::optional<T> typed_get(const File& f, const std::string& key, F&& conv) {
  const Value* v = f.find(key);
  if (!v) return std::nullopt;
  try {
    return conv(*v);
  } catch (const Error& e) {
    fail("gguf: ", f.path(), ": key '", key, "': ", e.what());
  }
}

}  // namespace

std::optional<int64_t> File::get_int(const std::string& key) const {
  return typed_get<int64_t>(*this, key, [](const Value& v) {
    if (!v.is_integer()) type_error(v, "an integer");
    return v.as_int();
  });
}
std::optional<double> File::get_float(const std::string& key) const {
  return typed_get<double>(*this, key, [](const Value& v) { return v.as_float(); });
}
std::optional<bool> File::get_bool(const std::string& key) const {
  return typed_get<bool>(*this, key, [](const Value& v) { return v.as_bool(); });
}
std::optional<std::string> File::get_string(const std::string& key) const {
  return typed_get<std::string>(*this, key, [](const Value& v) { return v.as_string(); });
}
std::optional<std::vector<std::string>> File::get_string_array(const std::string& key) const {
  return typed_get<std::vector<std::string>>(*this, key, [](const Value& v) {
    if (!v.is_array() || v.elem_type != ValueType::STRING) type_error(v, "an array of strings");
    std::vector<std::string> out;
    out.reserve(v.array.size());
    for (const Value& e : v.array) out.push_back(e.as_string());
    return out;
  });
}
std::optional<std::vector<double>> File::get_float_array(const std::string& key) const {
  return typed_get<std::vector<double>>(*this, key, [](const Value& v) {
    if (!v.is_array() || v.elem_type == ValueType::STRING || v.elem_type == ValueType::ARRAY ||
        v.elem_type == ValueType::BOOL)
      type_error(v, "an array of numbers");
    std::vector<double> out;
    out.reserve(v.array.size());
    for (const Value& e : v.array) out.push_back(e.as_float());
    return out;
  });
}
std::optional<std::vector<int64_t>> File::get_int_array(const std::string& key) const {
  return typed_get<std::vector<int64_t>>(*this, key, [](const Value& v) {
    if (!v.is_array() || !(is_unsigned_type(v.elem_type) || is_signed_type(v.elem_type) || v.elem_type == ValueType::BOOL))
      type_error(v, "an array of integers");
    std::vector<int64_t> out;
    out.reserve(v.array.size());
    for (const Value& e : v.array) out.push_back(e.as_int());
    return out;
  });
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

template <typename T>
void put(std::vector<uint8_t>& b, T v) {
  uint8_t tmp[sizeof(T)];
  std::memcpy(tmp, &v, sizeof(T));
  b.insert(b.end(), tmp, tmp + sizeof(T));
}
void put_string(std::vector<uint8_t>& b, const std::string& s) {
  put<uint64_t>(b, s.size());
  b.insert(b.end(), s.begin(), s.end());
}

// Integer payload of v, range-checked against [lo, hi].
int64_t checked_signed(const Value& v, int64_t lo, int64_t hi, const std::string& key) {
  int64_t x = v.as_int();
  EV_CHECK(x >= lo && x <= hi, "gguf writer: key '", key, "': value ", x, " does not fit ", value_type_name(v.type));
  return x;
}
uint64_t checked_unsigned(const Value& v, uint64_t hi, const std::string& key) {
  uint64_t x;
  if (const auto* u = std::get_if<uint64_t>(&v.scalar)) {
    x = *u;
  } else {
    int64_t s = v.as_int();
    EV_CHECK(s >= 0, "gguf writer: key '", key, "': negative value ", s, " for ", value_type_name(v.type));
    x = static_cast<uint64_t>(s);
  }
  EV_CHECK(x <= hi, "gguf writer: key '", key, "': value ", x, " does not fit ", value_type_name(v.type));
  return x;
}

void put_value(std::vector<uint8_t>& b, const Value& v, const std::string& key, int depth) {
  try {
    switch (v.type) {
      case ValueType::UINT8: put<uint8_t>(b, static_cast<uint8_t>(checked_unsigned(v, UINT8_MAX, key))); break;
      case ValueType::UINT16: put<uint16_t>(b, static_cast<uint16_t>(checked_unsigned(v, UINT16_MAX, key))); break;
      case ValueType::UINT32: put<uint32_t>(b, static_cast<uint32_t>(checked_unsigned(v, UINT32_MAX, key))); break;
      case ValueType::UINT64: put<uint64_t>(b, checked_unsigned(v, UINT64_MAX, key)); break;
      case ValueType::INT8: put<int8_t>(b, static_cast<int8_t>(checked_signed(v, INT8_MIN, INT8_MAX, key))); break;
      case ValueType::INT16: put<int16_t>(b, static_cast<int16_t>(checked_signed(v, INT16_MIN, INT16_MAX, key))); break;
      case ValueType::INT32: put<int32_t>(b, static_cast<int32_t>(checked_signed(v, INT32_MIN, INT32_MAX, key))); break;
      case ValueType::INT64: put<int64_t>(b, v.as_int()); break;
      case ValueType::FLOAT32: put<float>(b, static_cast<float>(v.as_float())); break;
      case ValueType::FLOAT64: put<double>(b, v.as_float()); break;
      case ValueType::BOOL: put<uint8_t>(b, v.as_bool() ? 1 : 0); break;
      case ValueType::STRING: put_string(b, v.as_string()); break;
      case ValueType::ARRAY:
        EV_CHECK(static_cast<uint32_t>(v.elem_type) < kNumValueTypes, "unknown array element type");
        EV_CHECK(v.elem_type != ValueType::ARRAY || depth + 1 < kMaxArrayDepth, "arrays nested deeper than ",
                 kMaxArrayDepth, " levels");
        put<uint32_t>(b, static_cast<uint32_t>(v.elem_type));
        put<uint64_t>(b, v.array.size());
        for (const Value& e : v.array) {
          EV_CHECK(e.type == v.elem_type, "array of ", value_type_name(v.elem_type), " holds a ", value_type_name(e.type));
          put_value(b, e, key, depth + 1);
        }
        break;
      default: fail("unknown value type ", static_cast<uint32_t>(v.type));
    }
  } catch (const Error& e) {
    if (depth > 0) throw;
    std::string msg = e.what();
    if (msg.rfind("gguf writer:", 0) == 0) throw;
    fail("gguf writer: key '", key, "': ", msg);
  }
}

// Streams to `<path>.tmp`, then fsyncs and renames over `path`; removes the temp file on failure.
class AtomicStream {
 public:
  explicit AtomicStream(const std::string& path) : path_(path), tmp_(path + ".tmp") {
    f_ = std::fopen(tmp_.c_str(), "wb");
    EV_CHECK(f_, "gguf: ", tmp_, ": cannot create: ", std::strerror(errno));
  }
  ~AtomicStream() {
    if (f_) {
      std::fclose(f_);
      std::remove(tmp_.c_str());
    }
  }
  void write(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n) fail("gguf: ", path_, ": write failed: ", std::strerror(errno));
    written_ += n;
  }
  void pad_to(uint64_t alignment) {
    static const uint8_t zeros[256] = {};
    while (written_ % alignment != 0) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(alignment - written_ % alignment, sizeof(zeros)));
      write(zeros, n);
    }
  }
  void commit() {
    bool ok = std::fflush(f_) == 0;
    ok = ::fsync(fileno(f_)) == 0 && ok;
    ok = std::fclose(f_) == 0 && ok;
    f_ = nullptr;
    if (!ok) {
      std::remove(tmp_.c_str());
      fail("gguf: ", path_, ": write failed: ", std::strerror(errno));
    }
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
      int e = errno;
      std::remove(tmp_.c_str());
      fail("gguf: ", path_, ": rename failed: ", std::strerror(e));
    }
  }

 private:
  std::string path_, tmp_;
  FILE* f_ = nullptr;
  uint64_t written_ = 0;
};

}  // namespace

void Writer::set(const std::string& key, Value value) {
  for (auto& kv : kv_) {
    if (kv.first == key) {
      kv.second = std::move(value);
      return;
    }
  }
  kv_.emplace_back(key, std::move(value));
}
void Writer::set_u32(const std::string& key, uint32_t v) { set(key, make_u32(v)); }
void Writer::set_i32(const std::string& key, int32_t v) { set(key, make_int(ValueType::INT32, v)); }
void Writer::set_u64(const std::string& key, uint64_t v) { set(key, make_u64(v)); }
void Writer::set_f32(const std::string& key, float v) { set(key, make_f32(v)); }
void Writer::set_bool(const std::string& key, bool v) { set(key, make_bool(v)); }
void Writer::set_string(const std::string& key, const std::string& v) { set(key, make_string(v)); }
void Writer::set_string_array(const std::string& key, const std::vector<std::string>& v) {
  std::vector<Value> e;
  e.reserve(v.size());
  for (const auto& s : v) e.push_back(make_string(s));
  set(key, make_array(ValueType::STRING, std::move(e)));
}
void Writer::set_f32_array(const std::string& key, const std::vector<float>& v) {
  std::vector<Value> e;
  e.reserve(v.size());
  for (float x : v) e.push_back(make_f32(x));
  set(key, make_array(ValueType::FLOAT32, std::move(e)));
}
void Writer::set_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  std::vector<Value> e;
  e.reserve(v.size());
  for (int32_t x : v) e.push_back(make_int(ValueType::INT32, x));
  set(key, make_array(ValueType::INT32, std::move(e)));
}
void Writer::copy_metadata(const File& from) {
  for (const auto& kv : from.metadata()) set(kv.first, kv.second);
}

void Writer::add_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data,
                        size_t nbytes) {
  EV_CHECK(name.size() <= kMaxNameLen, "gguf writer: tensor name '", name.substr(0, 64), "...' is longer than ",
           kMaxNameLen, " bytes");
  for (const auto& t : tensors_) EV_CHECK(t.name != name, "gguf writer: duplicate tensor '", name, "'");
  std::optional<DTypeInfo> info;
  if (static_cast<uint32_t>(dtype) < 1000) info = dtype_info(dtype);
  EV_CHECK(info, "gguf writer: tensor '", name, "': dtype ", static_cast<uint32_t>(dtype), " has no GGUF type");
  EV_CHECK(shape.size() <= kMaxDims, "gguf writer: tensor '", name, "' has ", shape.size(), " dimensions (at most 4)");
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) {
    EV_CHECK(shape[i] >= 0, "gguf writer: tensor '", name, "' has a negative dimension");
    rows *= shape[i];
  }
  int64_t last = shape.empty() ? 1 : shape.back();
  EV_CHECK(last >= 0 && last % info->block_size == 0, "gguf writer: tensor '", name, "' row length ", last,
           " is not a multiple of the ", info->name, " block size ", info->block_size);
  size_t want = last == 0 || rows == 0 ? 0 : row_bytes(dtype, last) * static_cast<size_t>(rows);
  EV_CHECK(nbytes == want, "gguf writer: tensor '", name, "' has ", nbytes, " bytes, ", info->name, " ", want,
           " expected");
  EV_CHECK(data || nbytes == 0, "gguf writer: tensor '", name, "' has no data");
  tensors_.push_back({name, dtype, std::move(shape), data, nbytes, nullptr});
}

void Writer::add_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
  auto owned = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  add_tensor(name, dtype, std::move(shape), owned->data(), owned->size());
  tensors_.back().owned = std::move(owned);
}

void Writer::write(const std::string& path) const {
  uint64_t alignment = kDefaultAlignment;
  for (const auto& kv : kv_) {
    if (kv.first != "general.alignment") continue;
    EV_CHECK(kv.second.is_integer(), "gguf writer: general.alignment must be an integer");
    int64_t a = kv.second.as_int();
    EV_CHECK(a > 0 && is_pow2(static_cast<uint64_t>(a)) && static_cast<uint64_t>(a) <= kMaxAlignment,
             "gguf writer: general.alignment ", a, " is not a power of two");
    alignment = static_cast<uint64_t>(a);
  }

  std::vector<uint8_t> header;
  header.insert(header.end(), kMagic, kMagic + 4);
  put<uint32_t>(header, 3);
  put<uint64_t>(header, tensors_.size());
  put<uint64_t>(header, kv_.size());
  for (const auto& kv : kv_) {
    EV_CHECK(kv.first.size() <= kMaxKeyLen, "gguf writer: key longer than ", kMaxKeyLen, " bytes");
    put_string(header, kv.first);
    put<uint32_t>(header, static_cast<uint32_t>(kv.second.type));
    put_value(header, kv.second, kv.first, 0);
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_string(header, t.name);
    put<uint32_t>(header, static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) put<uint64_t>(header, static_cast<uint64_t>(*it));
    put<uint32_t>(header, static_cast<uint32_t>(t.dtype));
    put<uint64_t>(header, offset);
    offset += (t.nbytes + alignment - 1) / alignment * alignment;
  }

  AtomicStream out(path);
  out.write(header.data(), header.size());
  if (!tensors_.empty()) out.pad_to(alignment);
  for (const auto& t : tensors_) {
    out.write(t.data, t.nbytes);
    out.pad_to(alignment);
  }
  out.commit();
}

uint32_t llama_file_type(DType t) {
  switch (t) {
    case DType::F16: return 1;
    case DType::Q4_0: return 2;
    case DType::Q4_1: return 3;
    case DType::Q8_0: return 7;
    case DType::Q5_0: return 8;
    case DType::Q5_1: return 9;
    case DType::Q4_K: return 15;
    case DType::Q5_K: return 17;
    case DType::Q6_K: return 18;
    case DType::BF16: return 32;
    default: return 0;  // F32
  }
}

}  // namespace edgevl::gguf
