// matedge_chat: a terminal chat on the ExecuTorch C++ runtime that runs a bundle from
// `matedge bundle --app native`.
//
//   matedge_chat BUNDLE [--prompt TEXT] [--max-new-tokens N] [--variant NAME] [--json]
//                       [--member NAME|auto] [--target MS] [--speculative K] [--threads N]
//
// It reads BUNDLE/manifest.json, checks every file's sha256, times a few greedy tokens on the
// variant with the least memory (slowdown = measured ms/token / predicted), reads the memory the
// OS has available, chooses a variant with the bundle's rule (selection.hpp: the same function as
// edge/bundle/selection.py and apps/web/selection.js), and generates greedily with the bundle's
// tokenizer.json through pytorch/tokenizers (the tokenizer library of ExecuTorch's LLM runner).
// Without --prompt it reads one prompt per line from stdin; --variant runs that variant instead
// of the rule's choice (benchmarks). When the bundle holds an elastic file for the chosen
// device (`matedge build --elastic`), the app runs it instead: the build's default member (the
// chosen spec), --member NAME pinned, or --member auto: the latency controller holding --target
// ms/token (default: the device's decode limit x the measured slowdown), switching members
// between tokens over the program's one KV cache. --speculative K: the elastic file's cheapest
// member drafts K tokens per round for the running member (pinned), which verifies them in one
// call: the same tokens, fewer calls of the large member. --threads N: XNNPACK's worker threads
// (default: one per core). Bad input: one line, exit code 2.
#include <pytorch/tokenizers/hf_tokenizer.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "../cpp/quiet_logs.hpp"
#include "bundle.hpp"
#include "controller.hpp"
#include "selection.hpp"
#include "session.hpp"

using matedge::Clock;
using matedge::ms_since;
using matedge::Session;
using nlohmann::json;

namespace {

struct Options {
  std::string bundle, prompt, variant, member;
  bool has_prompt = false, json = false;
  int max_new = -1, speculative = 0, threads = 0;
  double target = 0;
};

// The number an option takes, or one line naming the option and what it accepts.
double number(const std::string& option, const std::string& value, bool integer) {
  size_t used = 0;
  double x = 0;
  try {
    x = std::stod(value, &used);
  } catch (const std::exception&) {
  }
  if (used != value.size() || !(x > 0) || (integer && x != static_cast<int>(x)))
    throw matedge::BundleError(option + " " + value + ": expected a positive " + (integer ? "integer" : "number"));
  return x;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw matedge::BundleError(a + " needs a value");
      return argv[++i];
    };
    if (a == "--prompt") o.prompt = next(), o.has_prompt = true;
    else if (a == "--max-new-tokens") o.max_new = static_cast<int>(number(a, next(), true));
    else if (a == "--json") o.json = true;
    else if (a == "--variant") o.variant = next();
    else if (a == "--member") o.member = next();
    else if (a == "--target") o.target = number(a, next(), false);
    else if (a == "--speculative") o.speculative = static_cast<int>(number(a, next(), true));
    else if (a == "--threads") o.threads = static_cast<int>(number(a, next(), true));
    else if (a.rfind("--", 0) == 0) throw matedge::BundleError("unknown option " + a + " (see the usage in chat.cpp)");
    else o.bundle = a;
  }
  if (o.bundle.empty()) throw matedge::BundleError("usage: matedge_chat BUNDLE [--prompt TEXT] [--max-new-tokens N] [--json]");
  return o;
}

std::vector<int64_t> encode(tokenizers::HFTokenizer& tok, const json& m, const std::string& text) {
  auto ids = tok.encode(text, 0, 0);
  if (!ids.ok()) throw matedge::BundleError("the tokenizer cannot encode the prompt");
  std::vector<int64_t> out;
  const auto& t = m["tokenizer"];
  if (t["add_bos"].get<bool>() && t["bos_id"].is_number()) out.push_back(t["bos_id"].get<int64_t>());
  for (auto id : ids.get()) out.push_back(static_cast<int64_t>(id));
  return out;
}

std::string decode(tokenizers::HFTokenizer& tok, const std::vector<int64_t>& ids, const json& m) {
  std::string text;
  uint64_t prev = 0;
  for (int64_t id : ids) {
    bool special = id == m["tokenizer"]["bos_id"] || id == m["tokenizer"]["pad_id"];
    for (const auto& e : m["tokenizer"]["eos_ids"]) special = special || id == e.get<int64_t>();
    if (!special) {
      auto piece = tok.decode(prev, static_cast<uint64_t>(id));
      if (piece.ok()) text += piece.get();
    }
    prev = static_cast<uint64_t>(id);
  }
  return text;
}

}  // namespace

// What the app chose and how it runs: the loaded session of the chosen variant.
struct Chosen {
  std::unique_ptr<Session> session;
  const json* variant = nullptr;
  const json* elastic = nullptr;  // the bundle's elastic file for the chosen device, when it has one
  std::unique_ptr<matedge::Chooser> chooser;  // with `elastic`: the member of every token
  std::string draft, verify;                   // with --speculative: the two members
  matedge::Choice choice;
  json facts;
  double slowdown = 1, load_ms = 0;
};

// A few greedy tokens (after a warm-up) on the variant with the least memory: this device's
// ms/token over the prediction. Then the device facts, the bundle's rule, and the chosen
// variant's session (the benchmarked one is reused when chosen).
Chosen choose_and_load(const Options& o, const json& m, tokenizers::HFTokenizer& tok, int64_t pad) {
  Chosen c;
  const json* cheapest = &m["variants"][0];
  for (const auto& v : m["variants"])
    if (matedge::cost_of(v, "memory_mb").value_or(1e300) < matedge::cost_of(*cheapest, "memory_mb").value_or(1e300)) cheapest = &v;
  auto t_load = Clock::now();
  c.session = std::make_unique<Session>(o.bundle + "/" + (*cheapest)["file"].get<std::string>(), *cheapest);
  c.load_ms = ms_since(t_load);
  double decode_ms = 0;
  auto bench_ids = encode(tok, m, "def ");
  c.session->generate(bench_ids, 3, {}, pad);
  c.session->generate(bench_ids, m["generation"].value("benchmark_tokens", 8) + 1, {}, pad, nullptr, &decode_ms);
  c.slowdown = decode_ms / matedge::cost_of(*cheapest, "decode_ms_per_token").value_or(decode_ms);

  double maxdec = 0, maxfirst = 0;  // the loosest limits the bundle's devices have
  for (const auto& v : m["variants"]) {
    maxdec = std::max(maxdec, v["limits"].value("decode_ms_per_token", 0.0));
    maxfirst = std::max(maxfirst, v["limits"].value("first_token_ms", 0.0));
  }
  double avail = matedge::available_memory_mb();
  c.facts = {{"available_memory_mb", avail > 0 ? json(avail) : json(nullptr)}, {"decode_ms_per_token", maxdec},
             {"first_token_ms", maxfirst}, {"slowdown", c.slowdown}};
  c.choice = matedge::choose(m, c.facts);
  if (!o.variant.empty()) c.choice = {o.variant, false, o.variant + ": forced by --variant"};
  for (const auto& v : m["variants"])
    if (v["name"] == c.choice.variant) c.variant = &v;
  if (!c.variant) throw matedge::BundleError("--variant " + o.variant + ": the bundle has no such variant");
  if (c.variant != cheapest) {
    c.session.reset();
    t_load = Clock::now();
    c.session = std::make_unique<Session>(o.bundle + "/" + (*c.variant)["file"].get<std::string>(), *c.variant);
    c.load_ms = ms_since(t_load);
  }
  return c;
}

// The chosen device's elastic file, if the bundle has one, loaded in the variant's place (its
// default member is the chosen spec), with the member chooser --member asks for.
void use_elastic(const Options& o, const json& m, Chosen& c) {
  if (m.contains("elastic"))  // not m.value(...): that returns a copy, and c.elastic points into m
    for (const auto& e : m["elastic"])
      if (e["device"] == (*c.variant)["device"]) c.elastic = &e;
  if (!c.elastic) {
    if (!o.member.empty() || o.speculative)
      throw matedge::BundleError(std::string(o.speculative ? "--speculative" : "--member") +
                                 ": the bundle has no elastic file for this device");
    return;
  }
  const json& e = *c.elastic;
  c.session.reset();
  auto t = Clock::now();
  c.session = std::make_unique<Session>(o.bundle + "/" + e["file"].get<std::string>(), e);
  c.load_ms = ms_since(t);
  const auto order = e["order"].get<std::vector<std::string>>();  // cheapest first
  const std::string pick = o.member.empty() ? e["default"].get<std::string>() : o.member;
  if (pick == "auto") {
    if (o.speculative) throw matedge::BundleError("--speculative verifies with one member: pin it with --member NAME, not auto");
    const auto& limit = (*c.variant)["limits"]["decode_ms_per_token"];
    const double target = o.target > 0 ? o.target : (limit.is_number() ? limit.get<double>() * c.slowdown : 0.0);
    if (target <= 0) throw matedge::BundleError("--member auto needs --target MS (the device sets no decode limit)");
    c.chooser = std::make_unique<matedge::LatencyController>(order, target);
    return;
  }
  if (std::find(order.begin(), order.end(), pick) == order.end()) {
    std::string names;
    for (const auto& n : order) names += (names.empty() ? "" : ", ") + n;
    throw matedge::BundleError("--member " + pick + ": the elastic file's members are " + names + " (or auto)");
  }
  c.chooser = std::make_unique<matedge::Pinned>(pick);
  if (o.speculative) {
    if (pick == order.front())
      throw matedge::BundleError("--speculative: " + pick + " is the cheapest member; no member drafts for it");
    c.draft = order.front(), c.verify = pick;
  }
}

int main(int argc, char** argv) try {
  matedge::quiet_runtime_logs();
  Options o = parse(argc, argv);
  matedge::set_threads(o.threads);
  json m = matedge::read_manifest(o.bundle);
  matedge::verify_files(o.bundle, m);  // before anything reads a file
  tokenizers::HFTokenizer tok;
  if (tok.load(o.bundle + "/" + m["tokenizer"]["file"].get<std::string>()) != tokenizers::Error::Ok)
    throw matedge::BundleError(o.bundle + "/tokenizer.json: pytorch/tokenizers cannot load it");
  const auto& gen = m["generation"];
  const int max_new = o.max_new > 0 ? o.max_new : gen["max_new_tokens"].get<int>();
  const auto stop = gen["stop_ids"].get<std::vector<int64_t>>();
  const int64_t pad = m["tokenizer"]["pad_id"].is_number() ? m["tokenizer"]["pad_id"].get<int64_t>() : 0;
  Chosen c = choose_and_load(o, m, tok, pad);
  use_elastic(o, m, c);
  std::fprintf(stderr, "matedge_chat: %s (spec %s): %s; slowdown %.2fx%s\n", c.choice.variant.c_str(),
               (*c.variant)["spec"].get<std::string>().c_str(), c.choice.reason.c_str(), c.slowdown,
               c.elastic ? ("; running " + (*c.elastic)["file"].get<std::string>()).c_str() : "");

  auto answer = [&](const std::string& prompt) {
    double first_ms = 0, decode_ms = 0;
    auto ids = encode(tok, m, prompt);
    std::vector<std::string> used;
    matedge::SpeculativeStats spec;
    auto out = o.speculative
                   ? c.session->speculative(ids, max_new, stop, o.speculative, c.draft, c.verify, &first_ms, &decode_ms, &spec)
                   : c.session->generate(ids, max_new, stop, pad, &first_ms, &decode_ms, c.chooser.get(), &used);
    const json speculative = o.speculative ? json{{"k", o.speculative}, {"draft", c.draft}, {"verify", c.verify},
                                                  {"drafted", spec.drafted}, {"accepted", spec.accepted},
                                                  {"rounds", spec.rounds}}
                                           : json(nullptr);
    if (o.json) {
      json r = {{"variant", c.choice.variant}, {"spec", (*c.variant)["spec"]}, {"fits", c.choice.fits},
                {"reason", c.choice.reason}, {"slowdown", c.slowdown}, {"facts", c.facts}, {"load_ms", c.load_ms},
                {"prompt_ids", ids}, {"tokens", out}, {"first_token_ms", first_ms}, {"decode_ms_per_token", decode_ms},
                {"text", decode(tok, out, m)},
                {"elastic", c.elastic ? (*c.elastic)["name"] : json(nullptr)},
                {"members_used", c.elastic && !o.speculative ? json(used) : json(nullptr)},
                {"speculative", speculative}};
      std::cout << r.dump() << std::endl;
    } else {
      std::cout << prompt << decode(tok, out, m) << std::endl;
      std::fprintf(stderr, "[%zu tokens, first token %.2f ms, decode %.3f ms/token", out.size(), first_ms, decode_ms);
      if (o.speculative)
        std::fprintf(stderr, "; %s drafted %d, %s kept %d in %d calls", c.draft.c_str(), spec.drafted, c.verify.c_str(),
                     spec.accepted, spec.rounds);
      std::fprintf(stderr, "]\n");
    }
  };
  if (o.has_prompt) {
    answer(o.prompt);
  } else {
    for (std::string line; std::cerr << "> " && std::getline(std::cin, line);)
      if (!line.empty()) answer(line);
  }
  return 0;
} catch (const matedge::BundleError& e) {
  std::fprintf(stderr, "matedge_chat: error: %s\n", e.what());
  return 2;
} catch (const std::exception& e) {
  std::fprintf(stderr, "matedge_chat: error: %s\n", e.what());
  return 1;
}
