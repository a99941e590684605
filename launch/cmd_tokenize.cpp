// `graft tokenize --tokenizer byte|tokenizer.json [--text FILE] [--decode] [--whole]`: text ->
// token ids, one line of space-separated ids per input line (the line without its "\n"); with
// --decode, lines of ids -> one line of text each. --whole takes the input as one text (newlines
// included): one line of ids, or with --decode the text of all the ids, with no newline added.
// Input from --text or stdin. Ids are those of the Hugging Face `tokenizers` library with
// add_special_tokens=False (framework/data/tokenizer_bpe.h). Bad input: InputError, exit 2.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "framework/core/error.h"
#include "framework/data/tokenizer.h"
#include "framework/data/tokenizer_bpe.h"
#include "launch/command.h"

namespace graft::launch {
namespace {

std::string read_all(const std::string& path) {
  if (path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), {});
  std::ifstream f(path, std::ios::binary);
  GRAFT_INPUT_CHECK(f.good(), "--text ", path, ": cannot read the file");
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// "a\nb\n" -> {"a", "b"}; "a\nb" -> {"a", "b"}; "" -> {}.
std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> lines;
  size_t at = 0;
  while (at < s.size()) {
    const size_t nl = s.find('\n', at);
    lines.push_back(s.substr(at, nl == std::string::npos ? std::string::npos : nl - at));
    at = nl == std::string::npos ? s.size() : nl + 1;
  }
  return lines;
}

std::vector<int64_t> parse_ids(const std::string& line, size_t number, const std::string& where,
                               int64_t vocab) {
  std::vector<int64_t> ids;
  std::istringstream in(line);
  std::string word;
  while (in >> word) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    GRAFT_INPUT_CHECK(used == word.size() && v >= 0 && v < vocab, where, ":", number, ": '", word,
                      "' is not a token id (expected 0..", vocab - 1, ")");
    ids.push_back(v);
  }
  return ids;
}

void write(const std::string& s) { std::fwrite(s.data(), 1, s.size(), stdout); }

void write_ids(const std::vector<int64_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + std::to_string(ids[i]);
  write(s + "\n");
}

int run_tokenize(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  po::options_description desc;
  desc.add_options()("tokenizer", po::value<std::string>()->required(),
                     "byte, or a Hugging Face tokenizer.json (BPE)")(
      "text", po::value<std::string>()->default_value("-"), "input file (- or absent: stdin)")(
      "decode", po::bool_switch(), "input lines are ids; print the text")(
      "whole", po::bool_switch(), "the input is one text (newlines included), not one per line");
  auto vm = parse_options("tokenize", "--tokenizer byte|tokenizer.json [--text FILE] [--decode]",
                          desc, args);
  if (!vm) return 0;
  const std::string spec = (*vm)["tokenizer"].as<std::string>();
  std::unique_ptr<Tokenizer> tok;
  if (spec == "byte") {
    tok = std::make_unique<ByteTokenizer>();
  } else {
    GRAFT_INPUT_CHECK(std::filesystem::is_regular_file(spec), "--tokenizer ", spec,
                      ": no such file (expected byte or a tokenizer.json)");
    tok = BpeTokenizer::load(spec);
  }
  const std::string path = (*vm)["text"].as<std::string>();
  const std::string where = path == "-" ? "stdin" : path;
  const std::string input = read_all(path);
  const bool whole = (*vm)["whole"].as<bool>();
  if (!(*vm)["decode"].as<bool>()) {
    if (whole)
      write_ids(tok->encode(input));
    else
      for (const auto& line : split_lines(input)) write_ids(tok->encode(line));
    return 0;
  }
  const auto lines = split_lines(input);
  std::vector<int64_t> all;
  for (size_t i = 0; i < lines.size(); ++i) {
    auto ids = parse_ids(lines[i], i + 1, where, tok->vocab_size());
    if (whole)
      all.insert(all.end(), ids.begin(), ids.end());
    else
      write(tok->decode(ids) + "\n");
  }
  if (whole) write(tok->decode(all));
  return 0;
}

RegisterCommand reg{"tokenize", "text -> token ids (or --decode ids -> text) with a tokenizer",
                    run_tokenize};

}  // namespace
}  // namespace graft::launch
