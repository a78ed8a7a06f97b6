// One program of a bundle on the ExecuTorch C++ runtime (apps/native/chat.cpp): greedy
// generation in either convention the exporters write, member switching on an elastic file, and
// speculative decoding between two of its members over the program's one KV cache.
#pragma once

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../cpp/llm_ops.hpp"
#include "../cpp/threadpool.hpp"
#include "bundle.hpp"
#include "controller.hpp"

namespace matedge {

// XNNPACK's worker threads (default: the runtime's choice, one per core).
inline void set_threads(int n) {
  if (n > 0) executorch::extension::threadpool::get_threadpool()->_unsafe_reset_threadpool(static_cast<uint32_t>(n));
}

using Clock = std::chrono::steady_clock;
using executorch::extension::Module;
using executorch::runtime::EValue;

inline double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// What a speculative run did: tokens drafted, drafts the verifier kept, verify calls.
struct SpeculativeStats {
  int drafted = 0, accepted = 0, rounds = 0;
};

// One variant's program, in either convention its exporter writes:
// - ExecuTorch's LLM runner: forward(tokens [1, T] with T dynamic, input_pos [1]);
// - the project's: prefill(tokens [1, P], right-padded) and decode(token [1, 1], position [1]).
// Both keep the KV cache in the program's mutable buffers. Logits are [1, T, V] or [1, V].
class Session {
 public:
  Session(const std::string& path, const nlohmann::json& variant) : module_(path, Module::LoadMode::MmapUseMlock) {
    auto names = module_.method_names();
    forward_ = names.ok() && names->count("forward") > 0;
    for (const char* m : forward_ ? std::vector<const char*>{"forward"} : std::vector<const char*>{"prefill", "decode"})
      if (matedge::load_method(module_, m) != executorch::runtime::Error::Ok)
        throw matedge::BundleError(path + ": cannot load method '" + m + "' (not an LLM program?)");
    auto sizes = module_.method_meta(forward_ ? "forward" : "prefill")->input_tensor_meta(0)->sizes();  // [1, P]
    prefill_len_ = sizes[sizes.size() - 1];
    context_ = variant["context"].get<int64_t>();
  }

  // Elastic files: run member `m`'s method forward_<m> from the next call on. Its KV cache is
  // the program's shared mutable buffers: what earlier members wrote is read back.
  void use_member(const std::string& m) {
    const std::string name = "forward_" + m;
    if (matedge::load_method(module_, name) != executorch::runtime::Error::Ok)
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

  // Speculative decoding on an elastic file (edge/device/elastic.py speculative(), the same
  // rounds): member `draft` proposes up to k tokens, one call each, then member `verify` checks
  // them in one call on [last, d_1..d_k] at the same position (T = k + 1), which rewrites those
  // cache slots with its own K/V. The longest agreeing prefix is kept plus the verifier's next
  // token, so the output equals `verify`'s greedy tokens; slots past it hold stale K/V that are
  // overwritten before any query attends to them. `decode_ms` is the time after the first token
  // over the tokens after it.
  std::vector<int64_t> speculative(const std::vector<int64_t>& ids, int max_new, const std::vector<int64_t>& stop,
                                   int k, const std::string& draft, const std::string& verify, double* first_ms,
                                   double* decode_ms, SpeculativeStats* stats) {
    if (!forward_) throw matedge::BundleError("speculative decoding needs an elastic file (forward_<member> methods)");
    const int64_t n = static_cast<int64_t>(ids.size());
    const std::string d = "forward_" + draft;
    use_member(draft);  // loads the draft's method (and checks the name) before the clock runs:
    auto t0 = Clock::now();  // first_ms then counts what a plain run of `verify` counts
    use_member(verify);
    const std::string v = method_;
    std::vector<int64_t> out{step(v.c_str(), {input(v.c_str(), 0, ids, {1, n}), input(v.c_str(), 1, {0}, {1})}, n - 1)};
    if (first_ms) *first_ms = ms_since(t0);
    auto t1 = Clock::now();
    auto stopped = [&](size_t from) {  // the first stop id at or after `from`: cut the output after it
      for (size_t i = from; i < out.size(); ++i) {
        if (std::find(stop.begin(), stop.end(), out[i]) != stop.end()) {
          out.resize(i + 1);
          return true;
        }
      }
      return false;
    };
    int64_t pos = n;  // out.back() is known, not yet in the cache, at `pos`
    while (!stopped(out.size() - 1) && static_cast<int>(out.size()) < max_new) {
      const int64_t kk = std::min<int64_t>({k, max_new - static_cast<int64_t>(out.size()), context_ - pos - 1});
      if (kk < 1) break;
      std::vector<int64_t> drafts, call{out.back()};
      for (int64_t i = 0; i < kk; ++i) {
        drafts.push_back(step(d.c_str(), {input(d.c_str(), 0, {call.back()}, {1, 1}), input(d.c_str(), 1, {pos + i}, {1})}, 0));
        call.push_back(drafts.back());
      }
      auto ver = step_rows(v.c_str(), {input(v.c_str(), 0, call, {1, kk + 1}), input(v.c_str(), 1, {pos}, {1})});
      int64_t ok = 0;
      while (ok < kk && drafts[ok] == ver[ok]) ++ok;
      const size_t from = out.size();
      out.insert(out.end(), drafts.begin(), drafts.begin() + ok);
      out.push_back(ver[ok]);
      pos += ok + 1;
      stats->drafted += kk, stats->accepted += ok, stats->rounds += 1;
      if (stopped(from)) break;
    }
    if (static_cast<int>(out.size()) > max_new) out.resize(max_new);
    if (decode_ms) *decode_ms = out.size() > 1 ? ms_since(t1) / (out.size() - 1) : 0.0;
    use_member(verify);
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
    auto rows = step_rows(method, std::move(inputs));
    return rows[std::min(static_cast<size_t>(row), rows.size() - 1)];
  }

  // Run `method`; the argmax of every logits row ([1, T, V] -> T ids).
  std::vector<int64_t> step_rows(const char* method, std::vector<EValue> inputs) {
    auto out = module_.execute(method, inputs);
    keep_.clear();
    if (!out.ok()) throw std::runtime_error(std::string(method) + " failed with error " + std::to_string(int(out.error())));
    const auto& logits = out->at(0).toTensor();
    const int64_t vocab = logits.size(logits.dim() - 1);
    std::vector<int64_t> ids;
    for (const float* p = logits.const_data_ptr<float>(); ids.size() < size_t(logits.numel() / vocab); p += vocab)
      ids.push_back(std::max_element(p, p + vocab) - p);
    return ids;
  }

  Module module_;
  bool forward_ = false;
  std::string method_ = "forward", member_;
  int64_t prefill_len_ = 0, context_ = 0;
  std::vector<executorch::extension::TensorPtr> keep_;
};

}  // namespace matedge
