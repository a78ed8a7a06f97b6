// ExecuTorch's LLM custom ops (llama::update_cache, llama::custom_sdpa) for programs exported with
// `--ops llama`, which attend over the filled prefix of the KV cache instead of every slot. The
// executorch wheel ships their kernels in a library that also links libtorch (~110 MB resident),
// so the runner (apps/cpp) and the native app (apps/native) load it only when a method reports a
// missing operator; programs with plain ops never pay for it. CMake passes the library's path as
// MATEDGE_LLM_OPS_LIB when the wheel has it (an app built against a runtime that links the kernels
// statically, as ExecuTorch's own LLM apps do, needs none of this).
#pragma once

#include <executorch/extension/module/module.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "quiet_logs.hpp"

namespace matedge {

// Resident bytes of this process now (Linux; 0 elsewhere).
inline long long resident_bytes() {
  long long pages_total = 0, pages_resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%lld %lld", &pages_total, &pages_resident) != 2) pages_resident = 0;
    std::fclose(f);
  }
  return pages_resident * sysconf(_SC_PAGESIZE);
}

// What loading the LLM ops' library added to the resident set (0 when it was not loaded): the
// runner reports it so that a cost table can leave out what a device runtime linking the
// kernels statically would not carry.
inline long long& llm_ops_bytes() {
  static long long bytes = 0;
  return bytes;
}

// Loads the kernels' library once (its static initialisers register the kernels with the
// runtime this process already linked). False when it is not available.
inline bool load_llm_ops() {
#ifdef MATEDGE_LLM_OPS_LIB
  static void* handle = [] {
    // The library pulls in the Python bindings, whose static initialiser installs their own log
    // hook, and putting ours back warns: both print while stderr is muted.
    std::fflush(stderr);
    const int saved = dup(2), null = open("/dev/null", O_WRONLY);
    if (saved >= 0 && null >= 0) dup2(null, 2);
    const long long before = resident_bytes();
    void* h = dlopen(MATEDGE_LLM_OPS_LIB, RTLD_NOW | RTLD_GLOBAL);
    llm_ops_bytes() = h ? resident_bytes() - before : 0;
    quiet_runtime_logs();
    if (saved >= 0 && null >= 0) dup2(saved, 2);
    if (null >= 0) close(null);
    if (saved >= 0) close(saved);
    return h;
  }();
  return handle != nullptr;
#else
  return false;
#endif
}

// module.load_method(name), loading the LLM custom ops first when the program needs them. The
// first attempt keeps the runtime's missing-operator lines to itself: they are expected for a
// program with custom ops (any other error prints), and a second failure prints its own.
inline executorch::runtime::Error load_method(executorch::extension::Module& module, const std::string& name) {
  using executorch::runtime::Error;
  if (module.is_method_loaded(name)) return Error::Ok;
#ifdef MATEDGE_LLM_OPS_LIB
  static bool loaded = false;
  if (!loaded) {
    quiet_errors() = true;
    Error first = module.load_method(name);
    quiet_errors() = false;
    if (first != Error::OperatorMissing) return first;
    loaded = load_llm_ops();
    if (!loaded) return first;
  }
#endif
  return module.load_method(name);
}

}  // namespace matedge
