// Subcommand registry for the graft executable. Each command lives in its own file
// (launch/cmd_<name>.cpp) and registers itself:
//
//   static graft::launch::RegisterCommand reg{"inspect", "list tensors of a checkpoint", run};
//
// `run` receives the arguments after the command name and returns the exit code. Option parsing
// uses Boost.Program_options through parse_options(), which turns bad options into InputError
// (exit 2) and handles --help.
#pragma once

#include <boost/program_options.hpp>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace graft::launch {

struct Command {
  std::string summary;
  std::function<int(const std::vector<std::string>&)> run;
};

std::map<std::string, Command>& commands();

struct RegisterCommand {
  RegisterCommand(const std::string& name, const std::string& summary,
                  std::function<int(const std::vector<std::string>&)> run);
};

// Parses `args` against `desc` (plus --help) with optional positional arguments. Returns
// nullopt after printing help when --help was given. Unknown or malformed options throw
// InputError naming the option.
std::optional<boost::program_options::variables_map> parse_options(
    const std::string& command, const std::string& usage,
    const boost::program_options::options_description& desc, const std::vector<std::string>& args,
    const boost::program_options::positional_options_description* positional = nullptr);

}  // namespace graft::launch
