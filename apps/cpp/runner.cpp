// matedge_runner: load an ExecuTorch program (.pte) and time its methods, without Python.
//
//   matedge_runner --model m.pte --benchmark [--methods prefill,decode] [--prompt-tokens 64]
//                  [--warmup 3] [--runs 20] [--threads 1]
//   matedge_runner --model m.pte --describe
//   matedge_runner --model m.pte --tokenizer tokenizer.json --generate "prompt" [--max-new-tokens 32] [--json]
//
// Programs in ExecuTorch's LLM-runner convention have one method forward(tokens [1, T] with T
// dynamic, input_pos [1]) and their KV cache in mutable buffers. Benchmark mode times two phases
// of it, named as the profiler asks for them: "prefill" = forward of --prompt-tokens tokens at
// position 0, "decode" = forward of one token at position --prompt-tokens. Any other method
// name (or any method of another program) is timed with zero-filled inputs shaped by its own
// metadata (MethodMeta). It prints one JSON object on stdout: per phase/method the median / p90 /
// mean latency in ms, the planned memory (arena, including mutable buffers such as a KV cache),
// and the process's peak RSS. Errors go to stderr with a non-zero exit code.
//
// Generation mode is the sample app's core: the prompt is encoded with the tokenizer.json beside
// the model through pytorch-tokenizers' HFTokenizer (the tokenizer library of ExecuTorch's own
// LLM runner), fed to forward at position 0, then one greedy token per forward call until an
// id of the program's get_eos_ids, --max-new-tokens or the end of the KV cache
// (get_max_context_len). It prints the text (or, with --json, the token ids and timings).

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <pytorch/tokenizers/hf_tokenizer.h>

#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

// The wheel ships the threadpool library but not its header; this is the one call we need
// (executorch/extension/threadpool/threadpool.h: set the number of XNNPACK worker threads).
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

using executorch::extension::Module;
using executorch::runtime::EValue;
using executorch::runtime::MethodMeta;
using executorch::runtime::Tag;

namespace {

struct Options {
  std::string model;
  std::vector<std::string> methods;
  int warmup = 3;
  int runs = 20;
  int threads = 0;  // 0 = leave the runtime's default
  bool describe = false;
  bool generate = false;
  bool json = false;
  std::string prompt;
  std::string tokenizer;  // tokenizer.json (generation mode)
  int prompt_tokens = 64;  // the "prefill" phase of a forward program (benchmark mode)
  int max_new_tokens = 32;
};

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "matedge_runner: error: %s\n", message.c_str());
  std::exit(2);
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

int to_int(const std::string& flag, const char* value) {
  char* end = nullptr;
  long v = std::strtol(value, &end, 10);
  if (*end != '\0' || v < 0) fail(flag + " needs a non-negative integer, got '" + value + "'");
  return static_cast<int>(v);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) fail(a + " needs a value");
      return argv[++i];
    };
    if (a == "--model") o.model = next();
    else if (a == "--methods") o.methods = split(next());
    else if (a == "--warmup") o.warmup = to_int(a, next());
    else if (a == "--runs") o.runs = std::max(1, to_int(a, next()));
    else if (a == "--threads") o.threads = to_int(a, next());
    else if (a == "--benchmark") o.describe = false;
    else if (a == "--describe") o.describe = true;
    else if (a == "--generate") o.generate = true, o.prompt = next();
    else if (a == "--tokenizer") o.tokenizer = next();
    else if (a == "--prompt-tokens") o.prompt_tokens = std::max(1, to_int(a, next()));
    else if (a == "--max-new-tokens") o.max_new_tokens = std::max(1, to_int(a, next()));
    else if (a == "--json") o.json = true;
    else fail("unknown argument '" + a + "' (see the header of runner.cpp)");
  }
  if (o.model.empty()) fail("--model PATH is required");
  if (o.generate && o.tokenizer.empty()) fail("--generate needs --tokenizer PATH: the tokenizer.json beside the model");
  return o;
}

// Zero-filled inputs shaped by the method's metadata; the TensorPtrs own the memory.
std::vector<EValue> make_inputs(const MethodMeta& meta, std::vector<executorch::extension::TensorPtr>& keep) {
  std::vector<EValue> inputs;
  for (size_t i = 0; i < meta.num_inputs(); ++i) {
    auto tag = meta.input_tag(i);
    if (!tag.ok()) fail("cannot read the tag of input " + std::to_string(i));
    if (*tag == Tag::Tensor) {
      auto info = meta.input_tensor_meta(i);
      if (!info.ok()) fail("cannot read the metadata of input " + std::to_string(i));
      std::vector<executorch::aten::SizesType> sizes(info->sizes().begin(), info->sizes().end());
      keep.push_back(executorch::extension::make_tensor_ptr(
          sizes, std::vector<uint8_t>(info->nbytes(), 0), {}, {}, info->scalar_type()));
      inputs.emplace_back(*keep.back());
    } else if (*tag == Tag::Int) {
      inputs.emplace_back(static_cast<int64_t>(0));
    } else if (*tag == Tag::Double) {
      inputs.emplace_back(0.0);
    } else if (*tag == Tag::Bool) {
      inputs.emplace_back(false);
    } else {
      fail("input " + std::to_string(i) + " has a type the runner cannot build");
    }
  }
  return inputs;
}

size_t arena_bytes(const MethodMeta& meta) {
  size_t total = 0;
  for (size_t i = 0; i < meta.num_memory_planned_buffers(); ++i) {
    auto size = meta.memory_planned_buffer_size(i);
    if (size.ok()) total += static_cast<size_t>(*size);
  }
  return total;
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  double pos = q * (v.size() - 1);
  size_t lo = static_cast<size_t>(pos);
  size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// Input `index` of a method as an integer tensor of `values.size()` elements in the dtype (int64
// or int32) it expects, shaped [1, n] for a 2-D input (tokens) or [n] for a 1-D one (input_pos).
executorch::extension::TensorPtr int_input(const MethodMeta& meta, size_t index, const std::vector<int64_t>& values) {
  auto info = meta.input_tensor_meta(index);
  if (!info.ok()) fail("cannot read the metadata of input " + std::to_string(index));
  auto n = static_cast<executorch::aten::SizesType>(values.size());
  std::vector<executorch::aten::SizesType> sizes = info->sizes().size() == 2
      ? std::vector<executorch::aten::SizesType>{1, n} : std::vector<executorch::aten::SizesType>{n};
  using executorch::aten::ScalarType;
  if (info->scalar_type() == ScalarType::Long) return executorch::extension::make_tensor_ptr(sizes, std::vector<int64_t>(values));
  if (info->scalar_type() == ScalarType::Int)
    return executorch::extension::make_tensor_ptr(sizes, std::vector<int32_t>(values.begin(), values.end()));
  fail("input " + std::to_string(index) + " is not an integer tensor: not an LLM-runner forward(tokens, input_pos)");
}

// Asked through the method names: method_meta of a missing method logs an error line.
bool has_method(Module& module, const std::string& name) {
  auto names = module.method_names();
  return names.ok() && names->count(name) > 0;
}

// A forward(tokens, input_pos) program: ExecuTorch's LLM-runner convention.
bool is_llm_forward(Module& module) {
  if (!has_method(module, "forward")) return false;
  auto meta = module.method_meta("forward");
  return meta.ok() && meta->num_inputs() == 2;
}

// The inputs of one benchmark run: a forward phase ("prefill": --prompt-tokens tokens at 0;
// "decode": one token at --prompt-tokens), or zeros shaped by the method's own metadata.
std::vector<EValue> bench_inputs(Module& module, const std::string& name, const Options& o,
                                 std::vector<executorch::extension::TensorPtr>& keep, std::string& method) {
  method = name;
  if (!has_method(module, name) && (name == "prefill" || name == "decode") && is_llm_forward(module)) {
    method = "forward";
    auto meta = module.method_meta("forward");
    const bool prefill = name == "prefill";
    keep.push_back(int_input(*meta, 0, std::vector<int64_t>(prefill ? o.prompt_tokens : 1, 0)));
    keep.push_back(int_input(*meta, 1, {prefill ? 0 : static_cast<int64_t>(o.prompt_tokens)}));
    return {EValue(*keep[0]), EValue(*keep[1])};
  }
  if (!has_method(module, name)) fail("the program has no method '" + name + "'");
  auto meta = module.method_meta(name);
  if (!meta.ok()) fail("cannot read the metadata of method '" + name + "'");
  return make_inputs(*meta, keep);
}

std::string json_method(Module& module, const std::string& name, const Options& o) {
  std::vector<executorch::extension::TensorPtr> keep;
  std::string method;
  auto inputs = bench_inputs(module, name, o, keep, method);
  auto meta = module.method_meta(method);
  std::ostringstream js;
  js << "\"" << name << "\": {\"method\": \"" << method << "\", \"inputs\": " << meta->num_inputs()
     << ", \"arena_bytes\": " << arena_bytes(*meta);
  if (o.describe) return js.str() + "}";
  auto t0 = Clock::now();
  if (module.load_method(method) != executorch::runtime::Error::Ok) fail("cannot load method '" + method + "'");
  double load_ms = ms_since(t0);
  std::vector<double> samples;
  for (int i = 0; i < o.warmup + o.runs; ++i) {
    auto start = Clock::now();
    auto result = module.execute(method, inputs);
    double ms = ms_since(start);
    if (!result.ok()) fail("method '" + method + "' failed with error " + std::to_string(static_cast<int>(result.error())));
    if (i >= o.warmup) samples.push_back(ms);
  }
  double mean = 0;
  for (double s : samples) mean += s / samples.size();
  js << ", \"load_ms\": " << load_ms << ", \"runs\": " << samples.size() << ", \"median_ms\": " << percentile(samples, 0.5)
     << ", \"p90_ms\": " << percentile(samples, 0.9) << ", \"mean_ms\": " << mean
     << ", \"min_ms\": " << *std::min_element(samples.begin(), samples.end()) << ", \"samples_ms\": [";
  for (size_t i = 0; i < samples.size(); ++i) js << (i ? ", " : "") << samples[i];
  return js.str() + "]}";
}

// Peak RSS of this process since exec, in bytes. VmHWM belongs to the current address space;
// getrusage's ru_maxrss does not reset at exec, so a runner started by a large parent (a Python
// process holding torch) would report the parent's size.
long long peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;  // "VmHWM:  1234 kB"
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);  // not Linux: the best available (KB on Linux, bytes on macOS)
  return static_cast<long long>(usage.ru_maxrss) * 1024;
}


// -- generation (the sample app's core) -----------------------------------------------------------

// The integers a constant method returns (get_max_context_len, get_eos_ids, ...).
std::vector<int64_t> constant_ints(Module& module, const char* name) {
  auto out = has_method(module, name) ? module.execute(name) : executorch::runtime::Error::NotFound;
  if (!out.ok()) fail(std::string("the program has no metadata method ") + name + ": export it with `matedge export`");
  std::vector<int64_t> values;
  for (const auto& v : *out)
    if (v.isInt()) values.push_back(v.toInt());
  if (values.empty()) fail(std::string("metadata method ") + name + " returned no integer");
  return values;
}

// Greedy choice: the largest logit of the last row of a float32 [1, V] or [1, T, V] output.
int64_t argmax_last(const executorch::aten::Tensor& logits) {
  if (logits.scalar_type() != executorch::aten::ScalarType::Float) fail("the logits are not float32");
  const int64_t vocab = logits.size(logits.dim() - 1);
  const float* p = logits.const_data_ptr<float>() + (logits.numel() - vocab);
  return std::max_element(p, p + vocab) - p;
}

struct Generation {
  size_t prompt_tokens = 0;
  std::vector<int64_t> tokens;  // generated, without the end-of-sequence id
  std::string text;
  std::string stopped;          // "eos", "max_new_tokens" or "context"
  double prefill_ms = 0, decode_ms = 0;
  int decode_steps = 0;
};

// forward(tokens, input_pos) -> the greedy next token.
int64_t forward_step(Module& module, const MethodMeta& meta, const std::vector<int64_t>& tokens, int64_t pos) {
  auto t = int_input(meta, 0, tokens);
  auto p = int_input(meta, 1, {pos});
  auto out = module.execute("forward", {EValue(*t), EValue(*p)});
  if (!out.ok()) fail("forward failed with error " + std::to_string(static_cast<int>(out.error())));
  return argmax_last(out->at(0).toTensor());
}

std::unique_ptr<tokenizers::HFTokenizer> load_tokenizer(const std::string& path) {
  auto tok = std::make_unique<tokenizers::HFTokenizer>();
  if (tok->load(path) != tokenizers::Error::Ok) fail("cannot read tokenizer '" + path + "' (an HF tokenizer.json)");
  return tok;
}

// The prompt (with BOS) in one forward call, then one forward call per generated token.
Generation generate(Module& module, const Options& o) {
  if (!is_llm_forward(module)) fail("the program has no forward(tokens, input_pos) method: export it with `matedge export`");
  if (module.load_method("forward") != executorch::runtime::Error::Ok) fail("cannot load method 'forward'");
  auto meta = module.method_meta("forward");
  const int64_t context = constant_ints(module, "get_max_context_len")[0];
  const int64_t max_seq = constant_ints(module, "get_max_seq_len")[0];
  const auto eos = constant_ints(module, "get_eos_ids");
  auto tok = load_tokenizer(o.tokenizer);
  auto encoded = tok->encode(o.prompt, /*bos=*/1, /*eos=*/0);
  if (!encoded.ok()) fail("the tokenizer cannot encode the prompt");
  std::vector<int64_t> ids(encoded->begin(), encoded->end());
  if (static_cast<int64_t>(ids.size()) > max_seq)
    fail("the prompt is " + std::to_string(ids.size()) + " tokens with BOS; this program takes at most " +
         std::to_string(max_seq) + ": shorten it");
  Generation g;
  g.prompt_tokens = ids.size();
  auto t0 = Clock::now();
  int64_t next = forward_step(module, *meta, ids, 0);
  g.prefill_ms = ms_since(t0);
  uint64_t prev = ids.back();
  auto t1 = Clock::now();
  for (int64_t pos = static_cast<int64_t>(ids.size());; ++pos) {
    if (std::find(eos.begin(), eos.end(), next) != eos.end()) { g.stopped = "eos"; break; }
    g.tokens.push_back(next);
    auto piece = tok->decode(prev, static_cast<uint64_t>(next));
    if (piece.ok()) g.text += *piece;
    prev = static_cast<uint64_t>(next);
    if (static_cast<int>(g.tokens.size()) >= o.max_new_tokens) { g.stopped = "max_new_tokens"; break; }
    if (pos >= context) { g.stopped = "context"; break; }
    next = forward_step(module, *meta, {next}, pos);
    ++g.decode_steps;
  }
  g.decode_ms = ms_since(t1);
  return g;
}

void print_generation(const Generation& g, const Options& o, long long peak_rss) {
  double per_token = g.decode_steps ? g.decode_ms / g.decode_steps : 0.0;
  if (o.json) {
    std::ostringstream js;
    js << "{\"runner\": \"matedge_runner\", \"mode\": \"generate\", \"threads\": " << o.threads
       << ", \"prompt_tokens\": " << g.prompt_tokens << ", \"tokens\": [";
    for (size_t i = 0; i < g.tokens.size(); ++i) js << (i ? ", " : "") << g.tokens[i];
    js << "], \"stopped\": \"" << g.stopped << "\", \"prefill_ms\": " << g.prefill_ms
       << ", \"decode_ms_per_token\": " << per_token << ", \"peak_rss_bytes\": " << peak_rss << "}";
    std::printf("%s\n", js.str().c_str());
    return;
  }
  std::fwrite(g.text.data(), 1, g.text.size(), stdout);
  std::printf("\n");
  std::fprintf(stderr, "matedge_runner: %zu tokens (stopped: %s), prefill %.2f ms, decode %.3f ms/token\n",
               g.tokens.size(), g.stopped.c_str(), g.prefill_ms, per_token);
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  if (o.threads > 0) executorch::extension::threadpool::get_threadpool()->_unsafe_reset_threadpool(o.threads);
  // Mmap: weights are paged in from the file as the delegate reads them, as an app would do.
  // Shared arenas: methods of a program exported with share_mutable_buffers must see one KV
  // cache (an app built on the Module API needs the same flag).
  Module module(o.model, Module::LoadMode::Mmap, nullptr, nullptr, nullptr, /*share_memory_arenas=*/true);
  if (module.load() != executorch::runtime::Error::Ok) fail("cannot load program '" + o.model + "'");
  if (o.generate) {
    Generation g = generate(module, o);
    print_generation(g, o, peak_rss_bytes());
    return 0;
  }
  if (o.methods.empty()) {
    auto names = module.method_names();
    if (!names.ok()) fail("cannot list the methods of '" + o.model + "'");
    o.methods.assign(names->begin(), names->end());
    std::sort(o.methods.begin(), o.methods.end());
  }
  std::ostringstream js;
  js << "{\"runner\": \"matedge_runner\", \"runtime\": \"executorch\", \"threads\": " << o.threads
     << ", \"warmup\": " << o.warmup << ", \"methods\": {";
  for (size_t i = 0; i < o.methods.size(); ++i) js << (i ? ", " : "") << json_method(module, o.methods[i], o);
  js << "}";
  if (is_llm_forward(module)) {  // one method, one arena: the phases must not be summed
    auto meta = module.method_meta("forward");
    js << ", \"arena_bytes\": " << arena_bytes(*meta);
  }
  js << ", \"peak_rss_bytes\": " << peak_rss_bytes() << "}";
  std::printf("%s\n", js.str().c_str());
  return 0;
}
