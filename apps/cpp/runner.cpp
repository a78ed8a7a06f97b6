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
//
// Safety: before anything is loaded, the artifact's size and sha256 are checked against its
// metadata JSON (--meta FILE, default: the artifact's path with .json for its suffix, as
// `matedge export` writes it); a mismatch or a missing file is refused with one line. --no-verify
// skips the check for programs made by other tools. The program is then loaded with the
// runtime's InternalConsistency verification. Numeric options are range-checked. Every error is
// one line on stderr and exit code 2.

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <pytorch/tokenizers/hf_tokenizer.h>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>
#include <sys/stat.h>

#include <cerrno>
#include <climits>

#include <algorithm>
#include <fstream>
#include <memory>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "llm_ops.hpp"
#include "quiet_logs.hpp"
#include "threadpool.hpp"

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
  std::string meta;        // metadata JSON with file_size and sha256 ("" = beside the model)
  bool verify = true;      // --no-verify: run a program that has no metadata
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

// An integer option in [lo, hi]: no overflow, no trailing text (strtol alone would wrap or abort).
int to_int(const std::string& flag, const char* value, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(value, &end, 10);
  if (end == value || *end != '\0' || errno == ERANGE || v < lo || v > hi)
    fail(flag + " needs an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got '" +
         std::string(value).substr(0, 40) + "'");
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
    else if (a == "--warmup") o.warmup = to_int(a, next(), 0, 10000);
    else if (a == "--runs") o.runs = to_int(a, next(), 1, 100000);
    else if (a == "--threads") o.threads = to_int(a, next(), 0, 256);
    else if (a == "--meta") o.meta = next();
    else if (a == "--no-verify") o.verify = false;
    else if (a == "--benchmark") o.describe = false;
    else if (a == "--describe") o.describe = true;
    else if (a == "--generate") o.generate = true, o.prompt = next();
    else if (a == "--tokenizer") o.tokenizer = next();
    else if (a == "--prompt-tokens") o.prompt_tokens = to_int(a, next(), 1, 1 << 20);
    else if (a == "--max-new-tokens") o.max_new_tokens = to_int(a, next(), 1, 1 << 20);
    else if (a == "--json") o.json = true;
    else fail("unknown argument '" + a + "' (see the header of runner.cpp)");
  }
  if (o.model.empty()) fail("--model PATH is required");
  if (o.generate && o.tokenizer.empty()) fail("--generate needs --tokenizer PATH: the tokenizer.json beside the model");
  return o;
}

// -- artifact verification (before the runtime sees a byte) --------------------------------------
constexpr long long kMaxMetaBytes = 16 << 20;

std::string read_small_file(const std::string& path, const char* what) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) fail(std::string(what) + " '" + path + "' not found");
  if (!S_ISREG(st.st_mode)) fail(std::string(what) + " '" + path + "' is not a regular file");
  if (st.st_size > kMaxMetaBytes) fail(std::string(what) + " '" + path + "' is too large");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (!in.good() && !in.eof()) fail(std::string("cannot read ") + what + " '" + path + "'");
  return ss.str();
}

// The top-level "file_size" and "sha256" of the metadata JSON (nlohmann::json: a real parser,
// so a nested "sha256" such as the tokenizer's is never mistaken for the artifact's).
std::pair<long long, std::string> meta_digest(const std::string& text, const std::string& meta_path) {
  auto doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) fail("metadata '" + meta_path + "' is not a JSON object");
  auto size = doc.find("file_size");
  auto digest = doc.find("sha256");
  if (size == doc.end() || !size->is_number_integer() || digest == doc.end() || !digest->is_string())
    fail("metadata '" + meta_path + "' has no integer \"file_size\" and string \"sha256\"");
  return {size->get<long long>(), digest->get<std::string>()};
}

std::string sha256_hex(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '" + path + "'");
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr || EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) fail("cannot start sha256");
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx, digest, &n);
  EVP_MD_CTX_free(ctx);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) out += {hex[digest[i] >> 4], hex[digest[i] & 15]};
  return out;
}

std::string default_meta_path(const std::string& model) {
  size_t slash = model.find_last_of('/');
  size_t dot = model.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return model + ".json";
  return model.substr(0, dot) + ".json";
}

// Refuse (one line, exit 2) an artifact whose size or sha256 differ from its metadata JSON.
void verify_artifact(const Options& o) {
  struct stat st {};
  if (stat(o.model.c_str(), &st) != 0) fail("program '" + o.model + "' not found");
  if (!S_ISREG(st.st_mode)) fail("program '" + o.model + "' is not a regular file");
  if (!o.verify) return;
  const std::string meta_path = o.meta.empty() ? default_meta_path(o.model) : o.meta;
  struct stat ms {};
  if (o.meta.empty() && stat(meta_path.c_str(), &ms) != 0)
    fail("no metadata '" + meta_path + "' beside the program to verify it against (pass --meta FILE, or "
         "--no-verify for a program not written by matedge)");
  const auto [size, digest] = meta_digest(read_small_file(meta_path, "metadata"), meta_path);
  if (size != static_cast<long long>(st.st_size))
    fail("program '" + o.model + "' is " + std::to_string(static_cast<long long>(st.st_size)) +
         " bytes but its metadata says " + std::to_string(size) + ": refusing a damaged or substituted file");
  if (sha256_hex(o.model) != digest)
    fail("program '" + o.model + "' does not match the sha256 in '" + meta_path +
         "': refusing a damaged or substituted file");
}

// Last line of defence: the checks above stop a damaged file, but a hostile file that carries a
// matching sha256 can still make the runtime read out of bounds (measured: 1 in 40 re-signed
// mutants). Report that as one line and exit 2 instead of dying by a signal. Only
// async-signal-safe calls here (write, _exit).
void on_crash(int sig) {
  static const char msg[] = "matedge_runner: error: the runtime crashed reading the program (a damaged or hostile file; "
                            "re-export it)\n";
  ssize_t ignored = write(STDERR_FILENO, msg, sizeof(msg) - 1);
  (void)ignored;
  (void)sig;
  _exit(2);
}

void install_crash_handler() {
  static std::vector<char> alt(1 << 16);  // an own stack: the crash may be a stack overflow
  stack_t ss{};
  ss.ss_sp = alt.data();
  ss.ss_size = alt.size();
  sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_handler = on_crash;
  sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigaction(sig, &sa, nullptr);
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
  if (matedge::load_method(module, method) != executorch::runtime::Error::Ok) fail("cannot load method '" + method + "'");
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
  if (matedge::load_method(module, "forward") != executorch::runtime::Error::Ok) fail("cannot load method 'forward'");
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
  matedge::quiet_runtime_logs();
  install_crash_handler();
  Options o = parse(argc, argv);
  verify_artifact(o);
  if (o.threads > 0) executorch::extension::threadpool::get_threadpool()->_unsafe_reset_threadpool(o.threads);
  // Mmap: weights are paged in from the file as the delegate reads them, as an app would do.
  // Shared arenas: methods of a program exported with share_mutable_buffers must see one KV
  // cache (an app built on the Module API needs the same flag).
  Module module(o.model, Module::LoadMode::Mmap, nullptr, nullptr, nullptr, /*share_memory_arenas=*/true);
  // InternalConsistency: the runtime checks the flatbuffer's structure before trusting it.
  if (module.load(executorch::runtime::Program::Verification::InternalConsistency) != executorch::runtime::Error::Ok)
    fail("cannot load program '" + o.model + "' (not a valid ExecuTorch program)");
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
  js << ", \"peak_rss_bytes\": " << peak_rss_bytes() << ", \"llm_ops_bytes\": " << matedge::llm_ops_bytes() << "}";
  std::printf("%s\n", js.str().c_str());
  return 0;
}
