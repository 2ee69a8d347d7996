// Audio decoding (libsndfile) and resampling (libsoxr); see audio.h.
#include "media/audio.h"

#include <sndfile.h>
#include <soxr.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>

#include "core/error.h"

namespace edgevl::media {
namespace {

struct SfCloser {
  void operator()(SNDFILE* f) const { sf_close(f); }
};
using SfPtr = std::unique_ptr<SNDFILE, SfCloser>;

// Formats whose frame count comes from a header or index, so a shortfall while reading means the
// file is truncated. (MP3 / Ogg counts can be estimates.)
bool exact_frame_count(int format) {
  switch (format & SF_FORMAT_TYPEMASK) {
    case SF_FORMAT_WAV: case SF_FORMAT_WAVEX: case SF_FORMAT_RF64: case SF_FORMAT_W64:
    case SF_FORMAT_AIFF: case SF_FORMAT_CAF: case SF_FORMAT_FLAC: case SF_FORMAT_AU:
      return true;
    default:
      return false;
  }
}

Audio read_all(SNDFILE* f, const SF_INFO& info, const std::string& name, const AudioLimits& limits) {
  EV_CHECK(info.channels >= 1 && info.channels <= 256, "audio ", name, ": ", info.channels, " channels");
  EV_CHECK(info.samplerate >= 1000 && info.samplerate <= 768000, "audio ", name, ": sample rate ",
           info.samplerate, " Hz is out of range");
  EV_CHECK(info.frames > 0, "audio ", name, ": contains no audio samples");
  const double max_frames = limits.max_seconds * info.samplerate;
  EV_CHECK(double(info.frames) <= max_frames, "audio ", name, ": ", double(info.frames) / info.samplerate,
           " s is longer than the ", limits.max_seconds, " s limit");

  // libsndfile repairs a WAV whose data chunk runs past the end of the file by reading what is
  // there; it only says so in its log. A cut-off upload should not pass as a shorter clip.
  char log[4096] = {0};
  sf_command(f, SFC_GET_LOG_INFO, log, sizeof log - 1);
  EV_CHECK(!std::strstr(log, "(should be"), "audio ", name,
           ": truncated (the header promises more audio data than the file holds)");

  Audio a;
  a.sample_rate = info.samplerate;
  a.channels_in_file = info.channels;
  const int ch = info.channels;
  a.samples.reserve(size_t(info.frames));
  std::vector<float> buf(size_t(4096) * ch);
  sf_count_t total = 0;
  for (;;) {
    const sf_count_t got = sf_readf_float(f, buf.data(), 4096);
    if (got <= 0) break;
    total += got;
    EV_CHECK(double(total) <= max_frames, "audio ", name, ": longer than the ", limits.max_seconds, " s limit");
    for (sf_count_t i = 0; i < got; ++i) {
      if (ch == 1) {
        a.samples.push_back(buf[size_t(i)]);
        continue;
      }
      // mean over channels, summed in double so the order of channels does not matter
      double s = 0;
      for (int c = 0; c < ch; ++c) s += buf[size_t(i) * ch + c];
      a.samples.push_back(float(s / ch));
    }
  }
  EV_CHECK(sf_error(f) == SF_ERR_NO_ERROR, "audio ", name, ": corrupt data (", sf_strerror(f), ")");
  EV_CHECK(total > 0, "audio ", name, ": contains no audio samples");
  EV_CHECK(!exact_frame_count(info.format) || total == info.frames, "audio ", name, ": truncated (header says ",
           info.frames, " frames, ", total, " could be read)");
  for (float v : a.samples) EV_CHECK(std::isfinite(v), "audio ", name, ": has NaN or infinite samples");
  return a;
}

// libsndfile virtual I/O over a byte range.
struct MemoryFile {
  const unsigned char* data;
  sf_count_t size, pos = 0;
};
sf_count_t mem_len(void* u) { return static_cast<MemoryFile*>(u)->size; }
sf_count_t mem_seek(sf_count_t off, int whence, void* u) {
  auto* m = static_cast<MemoryFile*>(u);
  const sf_count_t base = whence == SEEK_CUR ? m->pos : whence == SEEK_END ? m->size : 0;
  const sf_count_t p = base + off;
  if (p < 0 || p > m->size) return -1;
  return m->pos = p;
}
sf_count_t mem_read(void* dst, sf_count_t n, void* u) {
  auto* m = static_cast<MemoryFile*>(u);
  const sf_count_t k = std::max<sf_count_t>(0, std::min(n, m->size - m->pos));
  std::memcpy(dst, m->data + m->pos, size_t(k));
  m->pos += k;
  return k;
}
sf_count_t mem_write(const void*, sf_count_t, void*) { return 0; }
sf_count_t mem_tell(void* u) { return static_cast<MemoryFile*>(u)->pos; }

}  // namespace

Audio decode_audio_file(const std::string& path, const AudioLimits& limits) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  EV_CHECK(!ec && std::filesystem::exists(status), "audio ", path, ": no such file");
  EV_CHECK(std::filesystem::is_regular_file(status), "audio ", path, ": not a regular file");
  const uintmax_t bytes = std::filesystem::file_size(path, ec);
  EV_CHECK(!ec, "audio ", path, ": cannot read its size");
  EV_CHECK(bytes > 0, "audio ", path, ": empty file");
  EV_CHECK(bytes <= limits.max_file_bytes, "audio ", path, ": ", bytes, " bytes is over the ",
           limits.max_file_bytes, "-byte limit");
  SF_INFO info{};
  SfPtr f(sf_open(path.c_str(), SFM_READ, &info));
  EV_CHECK(f, "audio ", path, ": cannot decode (", sf_strerror(nullptr), ")");
  return read_all(f.get(), info, path, limits);
}

Audio decode_audio_memory(const void* data, size_t size, const std::string& name, const AudioLimits& limits) {
  EV_CHECK(data && size > 0, "audio ", name, ": empty");
  EV_CHECK(size <= limits.max_file_bytes, "audio ", name, ": ", size, " bytes is over the ",
           limits.max_file_bytes, "-byte limit");
  MemoryFile mem{static_cast<const unsigned char*>(data), sf_count_t(size)};
  SF_VIRTUAL_IO io{mem_len, mem_seek, mem_read, mem_write, mem_tell};
  SF_INFO info{};
  SfPtr f(sf_open_virtual(&io, SFM_READ, &info, &mem));
  EV_CHECK(f, "audio ", name, ": cannot decode (", sf_strerror(nullptr), ")");
  return read_all(f.get(), info, name, limits);
}

std::vector<float> resample_audio(std::span<const float> samples, int from_rate, int to_rate) {
  EV_CHECK(from_rate > 0 && to_rate > 0, "audio resample: bad rates ", from_rate, " -> ", to_rate);
  if (from_rate == to_rate || samples.empty()) return {samples.begin(), samples.end()};
  const double ratio = double(to_rate) / from_rate;
  std::vector<float> out(size_t(std::ceil(samples.size() * ratio)) + 16);
  const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  const soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
  size_t done = 0;
  const soxr_error_t err = soxr_oneshot(from_rate, to_rate, 1, samples.data(), samples.size(), nullptr,
                                        out.data(), out.size(), &done, &io, &q, nullptr);
  EV_CHECK(!err, "audio resample ", from_rate, " -> ", to_rate, " Hz: ", err);
  out.resize(done);
  return out;
}

Audio load_audio(const std::string& path, int target_rate, const AudioLimits& limits) {
  Audio a = decode_audio_file(path, limits);
  if (a.sample_rate != target_rate) {
    a.samples = resample_audio(a.samples, a.sample_rate, target_rate);
    a.sample_rate = target_rate;
    EV_CHECK(!a.samples.empty(), "audio ", path, ": too short to resample to ", target_rate, " Hz");
  }
  return a;
}

}  // namespace edgevl::media
