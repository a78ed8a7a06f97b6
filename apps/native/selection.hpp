// The bundle's selection rule in C++: the same function as edge/bundle/selection.py (the
// reference) and apps/web/selection.js. The rule is data in manifest.json ("selection");
// tests/apps/test_selection.py runs all three on one table of cases.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace matedge {

using nlohmann::json;

struct Choice {
  std::string variant;
  bool fits = false;
  std::string reason;
};

struct Verdict {
  std::string cost;
  std::optional<double> value, limit, ok;  // ok: 1 holds, 0 fails, empty unknown
};

// A finite number at j[key], or empty (missing, null or not a number: unknown).
inline std::optional<double> known(const json& j, const std::string& key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return std::nullopt;
  double v = j[key].get<double>();
  return std::isfinite(v) ? std::optional<double>(v) : std::nullopt;
}

// The variant's cost `name`: measured when the build measured it, else predicted.
inline std::optional<double> cost_of(const json& variant, const std::string& name) {
  for (const char* source : {"measured", "predicted"}) {
    if (variant.contains(source)) {
      if (auto v = known(variant[source], name)) return v;
    }
  }
  return std::nullopt;
}

inline std::vector<Verdict> check(const json& variant, const json& rule, const json& facts) {
  std::vector<Verdict> out;
  for (const auto& c : rule["constraints"]) {
    Verdict v{c["cost"].get<std::string>()};
    v.limit = known(facts, c["limit"].get<std::string>());
    auto cost = cost_of(variant, v.cost);
    std::optional<double> scale;
    if (c.contains("scale") && c["scale"].is_string()) scale = known(facts, c["scale"].get<std::string>());
    if (cost) v.value = *cost * (scale ? *scale : 1.0);
    if (v.value && v.limit) v.ok = *v.value <= *v.limit ? 1.0 : 0.0;
    out.push_back(v);
  }
  return out;
}

inline std::string explain(const json& variant, const std::vector<Verdict>& verdicts, const std::string& head) {
  std::string s = variant["name"].get<std::string>() + " (" + variant.value("spec", std::string("?")) + "): " + head + ":";
  for (size_t i = 0; i < verdicts.size(); ++i) {
    const auto& x = verdicts[i];
    char buf[160];
    if (!x.ok) std::snprintf(buf, sizeof buf, " %s unknown", x.cost.c_str());
    else std::snprintf(buf, sizeof buf, " %s %.3g %s %.3g", x.cost.c_str(), *x.value, *x.ok ? "<=" : ">", *x.limit);
    s += (i ? "," : "") + std::string(buf);
  }
  return s;
}

// The variant this device runs. Best quality first (rule.order ascending); the first whose
// every known constraint holds wins; when none does, the one with the least rule.otherwise cost.
inline Choice choose(const json& manifest, const json& facts) {
  const json& rule = manifest["selection"];
  std::vector<json> variants(manifest["variants"].begin(), manifest["variants"].end());
  if (variants.empty()) throw std::runtime_error("the manifest lists no variants");
  const double inf = std::numeric_limits<double>::infinity();
  auto key = [&](const json& v) {
    std::vector<double> k;
    for (const auto& name : rule["order"]) k.push_back(known(v, name.get<std::string>()).value_or(inf));
    return k;
  };
  std::stable_sort(variants.begin(), variants.end(), [&](const json& a, const json& b) {
    auto ka = key(a), kb = key(b);
    if (ka != kb) return ka < kb;
    return a["name"].get<std::string>() < b["name"].get<std::string>();
  });
  for (const auto& v : variants) {
    auto verdicts = check(v, rule, facts);
    bool fits = std::all_of(verdicts.begin(), verdicts.end(), [](const Verdict& x) { return !x.ok || *x.ok; });
    if (fits) return {v["name"].get<std::string>(), true, explain(v, verdicts, "fits")};
  }
  const std::string otherwise = rule["otherwise"].get<std::string>();
  const json* best = &variants[0];
  for (const auto& v : variants) {
    double c = cost_of(v, otherwise).value_or(inf), b = cost_of(*best, otherwise).value_or(inf);
    if (c < b || (c == b && v["name"].get<std::string>() < (*best)["name"].get<std::string>())) best = &v;
  }
  return {(*best)["name"].get<std::string>(), false,
          explain(*best, check(*best, rule, facts), "nothing fits; least " + otherwise)};
}

}  // namespace matedge
