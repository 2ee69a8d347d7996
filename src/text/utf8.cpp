// UTF-8 validation and the streaming decoder (tokenizer.h). Well-formed sequences follow
// Unicode 15 Table 3-7; invalid input is replaced per "maximal subpart" (Unicode §3.9 U+FFFD
// substitution of maximal subparts, the WHATWG decoder's rule).
#include "text/tokenizer.h"

namespace edgevl::text::utf8 {

namespace {
constexpr char kReplacement[] = "\xEF\xBF\xBD";

// Expected total length and the allowed range of the second byte for a lead byte; 0 if not a lead.
struct LeadInfo {
  int len;
  uint8_t lo, hi;
};
LeadInfo lead_info(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};  // no surrogates
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};  // <= U+10FFFF
  return {0, 0, 0};
}

// Bytes at i that are a prefix of a valid character (>= 1 when a lead byte, else 0), and the
// character's full length.
size_t valid_prefix(std::string_view s, size_t i, int* full_len) {
  const LeadInfo li = lead_info((uint8_t)s[i]);
  *full_len = li.len;
  if (li.len <= 1) return li.len;
  size_t n = 1;
  if (i + 1 < s.size()) {
    const uint8_t b1 = (uint8_t)s[i + 1];
    if (b1 < li.lo || b1 > li.hi) return n;
    ++n;
    while ((int)n < li.len && i + n < s.size() && ((uint8_t)s[i + n] & 0xC0) == 0x80) ++n;
  }
  return n;
}
}  // namespace

size_t valid_char_len(std::string_view s, size_t i) {
  int full = 0;
  const size_t n = valid_prefix(s, i, &full);
  return (full > 0 && (int)n == full) ? n : 0;
}

size_t maximal_subpart(std::string_view s, size_t i) {
  int full = 0;
  const size_t n = valid_prefix(s, i, &full);
  return n == 0 ? 1 : n;
}

bool is_valid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = valid_char_len(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = valid_char_len(s, i);
    if (n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += kReplacement;
      i += maximal_subpart(s, i);
    }
  }
  return out;
}

void append_codepoint(std::string& out, uint32_t cp) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    out += kReplacement;
  } else if (cp < 0x80) {
    out += (char)cp;
  } else if (cp < 0x800) {
    out += (char)(0xC0 | (cp >> 6));
    out += (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += (char)(0xE0 | (cp >> 12));
    out += (char)(0x80 | ((cp >> 6) & 0x3F));
    out += (char)(0x80 | (cp & 0x3F));
  } else {
    out += (char)(0xF0 | (cp >> 18));
    out += (char)(0x80 | ((cp >> 12) & 0x3F));
    out += (char)(0x80 | ((cp >> 6) & 0x3F));
    out += (char)(0x80 | (cp & 0x3F));
  }
}

}  // namespace edgevl::text::utf8

namespace edgevl::text {

std::string Utf8StreamDecoder::feed(std::string_view bytes) {
  std::string buf = std::move(pending_);
  pending_.clear();
  buf.append(bytes);
  std::string out;
  out.reserve(buf.size());
  for (size_t i = 0; i < buf.size();) {
    const size_t n = utf8::valid_char_len(buf, i);
    if (n > 0) {
      out.append(buf, i, n);
      i += n;
      continue;
    }
    const size_t m = utf8::maximal_subpart(buf, i);
    const uint8_t lead = (uint8_t)buf[i];
    if (i + m == buf.size() && lead >= 0xC2 && lead <= 0xF4) {
      pending_ = buf.substr(i);  // a character still being completed by the next token
      break;
    }
    out += "\xEF\xBF\xBD";
    i += m;
  }
  return out;
}

std::string Utf8StreamDecoder::flush() {
  std::string out;
  if (!pending_.empty()) out = utf8::sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace edgevl::text
