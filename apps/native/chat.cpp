// matedge_chat: a terminal chat on the ExecuTorch C++ runtime that runs a bundle from
// `matedge bundle --app native`.
//
//   matedge_chat BUNDLE [--prompt TEXT] [--max-new-tokens N] [--variant NAME] [--json]
//                       [--member NAME|auto] [--target MS]
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
// between tokens over the program's one KV cache. Bad input: one line, exit code 2.
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <pytorch/tokenizers/hf_tokenizer.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "bundle.hpp"
#include "controller.hpp"
#include "selection.hpp"

using executorch::extension::Module;
using executorch::runtime::EValue;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// One variant's program, in either convention its exporter writes:
// - ExecuTorch's LLM runner: forward(tokens [1, T] with T dynamic, input_pos [1]);
// - the project's: prefill(tokens [1, P], right-padded) and decode(token [1, 1], position [1]).
// Both keep the KV cache in the program's mutable buffers. Logits are [1, T, V] or [1, V].
class Session {
 public:
  Session(const std::string& path, const json& variant) : module_(path, Module::LoadMode::MmapUseMlock) {
    auto names = module_.method_names();
    forward_ = names.ok() && names->count("forward") > 0;
    for (const char* m : forward_ ? std::vector<const char*>{"forward"} : std::vector<const char*>{"prefill", "decode"})
      if (module_.load_method(m) != executorch::runtime::Error::Ok)
        throw matedge::BundleError(path + ": cannot load method '" + m + "' (not an LLM program?)");
    auto sizes = module_.method_meta(forward_ ? "forward" : "prefill")->input_tensor_meta(0)->sizes();  // [1, P]
    prefill_len_ = sizes[sizes.size() - 1];
    context_ = variant["context"].get<int64_t>();
  }

  // Elastic files: run member `m`'s method forward_<m> from the next call on. Its KV cache is
  // the program's shared mutable buffers: what earlier members wrote is read back.
  void use_member(const std::string& m) {
    const std::string name = "forward_" + m;
    if (!module_.is_method_loaded(name) && module_.load_method(name) != executorch::runtime::Error::Ok)
      throw matedge::BundleError("the elastic file has no member '" + m + "'");
    method_ = name;
    member_ = m;
  }
  const std::string& member() const { return member_; }

  // Greedy tokens after `ids`, stopping at a stop id, `max_new` tokens or the end of the
  // context; `first_ms` includes the prompt, `decode_ms` is per token after the first.
  // With `chooser` (an elastic file) each call runs the member it names, recorded in `used`.
  std::vector<int64_t> generate(const std::vector<int64_t>& ids, int max_new, const std::vector<int64_t>& stop,
                                int64_t pad, double* first_ms = nullptr, double* decode_ms = nullptr,
                                matedge::Chooser* chooser = nullptr, std::vector<std::string>* used = nullptr) {
    const int64_t n = static_cast<int64_t>(ids.size());
    if (n > prefill_len_)
      throw matedge::BundleError("the prompt is " + std::to_string(n) + " tokens; this variant prefills at most " +
                                 std::to_string(prefill_len_) + ": shorten it");
    auto t0 = Clock::now();
    int64_t next;
    if (chooser) use_member(chooser->member());
    const char* fwd = method_.c_str();
    if (forward_) {
      next = step(fwd, {input(fwd, 0, ids, {1, n}), input(fwd, 1, {0}, {1})}, n - 1);
    } else {
      std::vector<int64_t> padded(ids);
      padded.resize(prefill_len_, pad);  // causal attention: the pad never reaches the prompt's logits
      next = step("prefill", {input("prefill", 0, padded, {1, prefill_len_})}, n - 1);
    }
    if (first_ms) *first_ms = ms_since(t0);
    std::vector<int64_t> out{next};
    if (used) used->push_back(member_);
    double decoding = 0;
    for (int64_t pos = n; static_cast<int>(out.size()) < max_new && pos < context_; ++pos) {
      if (std::find(stop.begin(), stop.end(), next) != stop.end()) break;
      if (chooser) use_member(chooser->member());
      const char* method = forward_ ? method_.c_str() : "decode";
      auto t1 = Clock::now();
      next = step(method, {input(method, 0, {next}, {1, 1}), input(method, 1, {pos}, {1})}, 0);
      const double ms = ms_since(t1);
      decoding += ms;
      if (chooser) chooser->observe(ms);
      if (used) used->push_back(member_);
      out.push_back(next);
    }
    if (decode_ms) *decode_ms = out.size() > 1 ? decoding / (out.size() - 1) : 0.0;
    return out;
  }

 private:
  // Input `index` of `method` with the given shape, as the int64 or int32 tensor it declares.
  EValue input(const char* method, size_t index, const std::vector<int64_t>& values, std::vector<int64_t> shape) {
    auto info = module_.method_meta(method)->input_tensor_meta(index);
    std::vector<executorch::aten::SizesType> sizes(shape.begin(), shape.end());
    if (info->scalar_type() == executorch::aten::ScalarType::Int)
      keep_.push_back(executorch::extension::make_tensor_ptr(sizes, std::vector<int32_t>(values.begin(), values.end())));
    else
      keep_.push_back(executorch::extension::make_tensor_ptr(sizes, std::vector<int64_t>(values)));
    return EValue(*keep_.back());
  }

  // Run `method`; the argmax of logits row `row` ([1, T, V]; a [1, V] output is the last row).
  int64_t step(const char* method, std::vector<EValue> inputs, int64_t row) {
    auto out = module_.execute(method, inputs);
    keep_.clear();
    if (!out.ok()) throw std::runtime_error(std::string(method) + " failed with error " + std::to_string(int(out.error())));
    const auto& logits = out->at(0).toTensor();
    const int64_t vocab = logits.size(logits.dim() - 1);
    const int64_t rows = logits.numel() / vocab;
    const float* p = logits.const_data_ptr<float>() + std::min(row, rows - 1) * vocab;
    return std::max_element(p, p + vocab) - p;
  }

  Module module_;
  bool forward_ = false;
  std::string method_ = "forward", member_;
  int64_t prefill_len_ = 0, context_ = 0;
  std::vector<executorch::extension::TensorPtr> keep_;
};

struct Options {
  std::string bundle, prompt, variant, member;
  bool has_prompt = false, json = false;
  int max_new = -1;
  double target = 0;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw matedge::BundleError(a + " needs a value");
      return argv[++i];
    };
    if (a == "--prompt") o.prompt = next(), o.has_prompt = true;
    else if (a == "--max-new-tokens") o.max_new = std::stoi(next());
    else if (a == "--json") o.json = true;
    else if (a == "--variant") o.variant = next();
    else if (a == "--member") o.member = next();
    else if (a == "--target") o.target = std::stod(next());
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
    if (!o.member.empty()) throw matedge::BundleError("--member: the bundle has no elastic file for this device");
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
}

int main(int argc, char** argv) try {
  Options o = parse(argc, argv);
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
    auto out = c.session->generate(ids, max_new, stop, pad, &first_ms, &decode_ms, c.chooser.get(), &used);
    if (o.json) {
      json r = {{"variant", c.choice.variant}, {"spec", (*c.variant)["spec"]}, {"fits", c.choice.fits},
                {"reason", c.choice.reason}, {"slowdown", c.slowdown}, {"facts", c.facts}, {"load_ms", c.load_ms},
                {"prompt_ids", ids}, {"tokens", out}, {"first_token_ms", first_ms}, {"decode_ms_per_token", decode_ms},
                {"text", decode(tok, out, m)},
                {"elastic", c.elastic ? (*c.elastic)["name"] : json(nullptr)},
                {"members_used", c.elastic ? json(used) : json(nullptr)}};
      std::cout << r.dump() << std::endl;
    } else {
      std::cout << prompt << decode(tok, out, m) << std::endl;
      std::fprintf(stderr, "[%zu tokens, first token %.2f ms, decode %.3f ms/token]\n", out.size(), first_ms, decode_ms);
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
