// CUDA queries that need c10_cuda. The build defines SLIMCLR_WITH_CUDA only when the LibTorch it
// links is a CUDA build; a CPU build answers with zeros and never touches CUDA symbols.
#pragma once

#include "runtime.hpp"

#include <torch/cuda.h>

#ifdef SLIMCLR_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace slimclr {

// Memory statistics of one CUDA device: 0 allocated, 1 reserved, 2 peak allocated, 3 peak reserved.
inline int64_t cuda_memory_stat(int32_t device, int32_t which) {
#ifdef SLIMCLR_WITH_CUDA
  if (!torch::cuda::is_available()) return 0;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
  const auto agg = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  switch (which) {
    case 0: return stats.allocated_bytes[agg].current;
    case 1: return stats.reserved_bytes[agg].current;
    case 2: return stats.allocated_bytes[agg].peak;
    case 3: return stats.reserved_bytes[agg].peak;
    default: throw std::invalid_argument("unknown CUDA memory statistic " + std::to_string(which));
  }
#else
  (void)device;
  (void)which;
  return 0;
#endif
}

// Starts the peak statistics of `device` anew (torch.cuda.reset_peak_memory_stats).
inline void cuda_reset_peak(int32_t device) {
#ifdef SLIMCLR_WITH_CUDA
  if (torch::cuda::is_available()) {
    c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
  }
#else
  (void)device;
#endif
}

inline void cuda_empty_cache() {
#ifdef SLIMCLR_WITH_CUDA
  if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

inline bool built_with_cuda() {
#ifdef SLIMCLR_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace slimclr
