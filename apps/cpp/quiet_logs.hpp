// ExecuTorch's runtime prints Info lines to stderr while a program loads (CPU probing, thread
// counts): chatter to someone who asked the runner (apps/cpp) or the native app (apps/native) for
// text. Errors still print. (pytorch-tokenizers' one "Registering override fallback regex" line
// comes from a static initializer of its library, before main: there is nothing to switch.)
#pragma once

#include <executorch/runtime/platform/platform.h>

#include <cstdio>
#include <string_view>

namespace matedge {

// While set, errors about missing operators and kernels are not printed: llm_ops.hpp expects
// them while it probes a program.
inline bool& quiet_errors() {
  static bool quiet = false;
  return quiet;
}

// The runtime's log hook (its PAL): Error and Fatal lines only, in the runtime's own format.
inline void errors_only(et_timestamp_t, et_pal_log_level_t level, const char* file, const char*, size_t line,
                        const char* message, size_t length) {
  if (level == kInfo || level == kDebug) return;
  if (quiet_errors()) {
    const std::string_view m(message, length);
    for (const char* expected : {"perator", "not found"})
      if (m.find(expected) != std::string_view::npos) return;
  }
  std::fprintf(stderr, "%c executorch:%s:%zu] %.*s\n", static_cast<char>(level), file, line,
               static_cast<int>(length), message);
}

// Call first in main: every later runtime log goes through errors_only.
inline void quiet_runtime_logs() {
  executorch::runtime::register_pal(executorch::runtime::PalImpl::create(errors_only, __FILE__));
}

}  // namespace matedge
