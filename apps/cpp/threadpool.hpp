// The wheel ships ExecuTorch's threadpool library but not its header; this is the one call the
// runner (apps/cpp) and the native app (apps/native) need from
// executorch/extension/threadpool/threadpool.h: the number of XNNPACK worker threads.
#pragma once

#include <cstdint>

namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool
