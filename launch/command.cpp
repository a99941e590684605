#include "launch/command.h"

#include <iostream>

#include "framework/core/error.h"

namespace graft::launch {
namespace po = boost::program_options;

std::map<std::string, Command>& commands() {
  static std::map<std::string, Command> table;
  return table;
}

RegisterCommand::RegisterCommand(const std::string& name, const std::string& summary,
                                 std::function<int(const std::vector<std::string>&)> run) {
  commands()[name] = Command{summary, std::move(run)};
}

std::optional<po::variables_map> parse_options(
    const std::string& command, const std::string& usage, const po::options_description& desc,
    const std::vector<std::string>& args, const po::positional_options_description* positional) {
  po::options_description all("options");
  all.add_options()("help,h", "show this help");
  all.add(desc);
  po::variables_map vm;
  try {
    auto parser = po::command_line_parser(args).options(all);
    if (positional) parser.positional(*positional);
    po::store(parser.run(), vm);
    if (vm.count("help")) {
      std::cout << "usage: graft " << command << " " << usage << "\n\n" << all << "\n";
      return std::nullopt;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw InputError(str(e.what(), " (graft ", command, " --help lists the options)"));
  }
  return vm;
}

}  // namespace graft::launch
