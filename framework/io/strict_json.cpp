#include "framework/io/strict_json.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <vector>

#include "framework/core/error.h"

namespace graft::io {
namespace {

// Thrown from the parser callback to stop parsing; carries the message.
struct Reject {
  std::string what;
};

std::string clip(std::string s) {
  constexpr size_t kMax = 200;
  if (s.size() > kMax) s = s.substr(0, kMax) + "...";
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

}  // namespace

std::optional<size_t> find_invalid_utf8(const char* s, size_t n) {
  const auto* u = reinterpret_cast<const unsigned char*>(s);
  size_t i = 0;
  while (i < n) {
    unsigned char c = u[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4, cp = c & 0x07;
    } else {
      return i;  // continuation byte, 0xC0/0xC1 (always overlong) or 0xF5..0xFF
    }
    if (n - i < len) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((u[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (u[i + k] & 0x3F);
    }
    const bool overlong = (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    const bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
    if (overlong || surrogate || cp > 0x10FFFF) return i;
    i += len;
  }
  return std::nullopt;
}

std::optional<std::string> parse_strict_json(const char* s, size_t n, int max_depth,
                                             nlohmann::ordered_json* out) {
  using Json = nlohmann::ordered_json;
  if (auto bad = find_invalid_utf8(s, n)) {
    return "not valid UTF-8 (ill-formed byte sequence at byte " + std::to_string(*bad) + ")";
  }
  // One frame per open object or array: the keys seen so far and the latest one (which names
  // the value being parsed, so that a nested duplicate can say where it is).
  struct Frame {
    std::set<std::string> keys;
    std::string last;
  };
  std::vector<Frame> frames;
  int depth = 0;
  auto callback = [&](int, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        if (++depth > max_depth) {
          throw Reject{"nested deeper than " + std::to_string(max_depth) + " levels"};
        }
        frames.emplace_back();
        break;
      case Json::parse_event_t::object_end:
      case Json::parse_event_t::array_end:
        --depth;
        frames.pop_back();
        break;
      case Json::parse_event_t::key: {
        const auto& k = parsed.get_ref<const std::string&>();
        if (!frames.back().keys.insert(k).second) {
          const bool nested = frames.size() >= 2;
          throw Reject{"duplicate key " + io::quoted(k) +
                       (nested ? " in " + io::quoted(frames[frames.size() - 2].last) : "")};
        }
        frames.back().last = k;
        break;
      }
      case Json::parse_event_t::value:
        break;
    }
    return true;
  };
  try {
    *out = Json::parse(s, s + n, callback, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const Reject& r) {
    return clip(r.what);
  } catch (const Json::exception& e) {
    return clip(std::string("not valid JSON: ") + e.what());
  }
  return std::nullopt;
}

nlohmann::ordered_json read_json_file(const std::string& path, size_t max_bytes, int max_depth) {
  // O_NONBLOCK: a FIFO must not hang the open; it is then rejected as not a regular file.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw InputError(str(path, ": cannot open: ", std::strerror(errno)));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(str(path, ": not a regular file"));
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    throw InputError(
        str(path, ": ", st.st_size, " bytes, more than the ", max_bytes, " expected of this file"));
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  if (got != text.size()) throw InputError(str(path, ": read failed"));
  nlohmann::ordered_json j;
  if (auto err = parse_strict_json(text.data(), text.size(), max_depth, &j)) {
    throw InputError(str(path, ": ", *err));
  }
  return j;
}

std::string quoted(const std::string& s) {
  // Names were validated as UTF-8 by the parser; replace anything else rather than throw.
  // Very long names are cut so that an error message stays readable.
  constexpr size_t kMax = 200;
  std::string q = nlohmann::json(s.size() > kMax ? s.substr(0, kMax) : s)
                      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > kMax) q += "...";
  return q;
}

}  // namespace graft::io
