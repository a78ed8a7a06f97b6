// matedge_select CASES.json: runs matedge::choose on [{manifest, facts}, ...] and prints the
// results as one JSON list (tests/apps/test_selection.py compares it with Python and JS).
#include <fstream>
#include <iostream>

#include "selection.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: matedge_select CASES.json\n";
    return 2;
  }
  std::ifstream in(argv[1]);
  if (!in) {
    std::cerr << "matedge_select: error: cannot read " << argv[1] << "\n";
    return 2;
  }
  nlohmann::json cases = nlohmann::json::parse(in, nullptr, false);
  if (cases.is_discarded() || !cases.is_array()) {
    std::cerr << "matedge_select: error: " << argv[1] << " is not a JSON list of cases\n";
    return 2;
  }
  nlohmann::json out = nlohmann::json::array();
  for (const auto& c : cases) {
    auto choice = matedge::choose(c["manifest"], c["facts"]);
    out.push_back({{"variant", choice.variant}, {"fits", choice.fits}, {"reason", choice.reason}});
  }
  std::cout << out.dump() << "\n";
  return 0;
}
