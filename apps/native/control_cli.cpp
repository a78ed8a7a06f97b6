// matedge_control CASES.json: runs matedge::LatencyController over [{members, target, cost, load,
// extra}, ...] (step i's decode time: cost[member] x load[i] + extra[i]) and prints the member of
// every step, one JSON list per case (tests/apps/test_controller_agree.py compares it with Python
// and JS).
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "controller.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: matedge_control CASES.json\n";
    return 2;
  }
  std::ifstream in(argv[1]);
  nlohmann::json cases = nlohmann::json::parse(in, nullptr, false);
  if (!in || cases.is_discarded() || !cases.is_array()) {
    std::cerr << "matedge_control: error: " << argv[1] << " is not a readable JSON list of cases\n";
    return 2;
  }
  nlohmann::json out = nlohmann::json::array();
  for (const auto& c : cases) {
    matedge::LatencyController ctl(c["members"].get<std::vector<std::string>>(), c["target"].get<double>());
    std::vector<std::string> used;
    const auto load = c["load"].get<std::vector<double>>(), extra = c["extra"].get<std::vector<double>>();
    for (size_t i = 0; i < load.size(); ++i) {
      used.push_back(ctl.member());
      ctl.observe(c["cost"][used.back()].get<double>() * load[i] + extra[i]);
    }
    out.push_back(used);
  }
  std::cout << out.dump() << "\n";
  return 0;
}
