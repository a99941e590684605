#include "framework/data/tokenizer.h"

namespace graft {

std::vector<int64_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int64_t> ids;
  ids.reserve(text.size());
  for (unsigned char c : text) ids.push_back(c);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string s;
  s.reserve(ids.size());
  for (int64_t id : ids) {
    if (id >= 0 && id < 256)
      s.push_back(static_cast<char>(id));
    else if (id == kBos)
      s += "<bos>";
    else if (id == kEos)
      s += "<eos>";
    else
      s += "<?>";
  }
  return s;
}

}  // namespace graft
