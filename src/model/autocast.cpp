// bf16 autocast on CUDA for the calling thread. tch's own autocast wrapper always uses the
// default CUDA autocast dtype (float16, which needs loss scaling); bf16 needs none.
#include <ATen/autocast_mode.h>

extern "C" {

// Enters a bf16 autocast region; returns 1 if CUDA autocast was already on, 0 if not, -1 on error.
int fstgate_autocast_bf16_enter() {
  try {
    bool previous = at::autocast::is_autocast_enabled(at::kCUDA);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::increment_nesting();
    return previous ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

// Leaves the region; the weight-cast cache is dropped when the outermost region ends, so the
// next step casts the updated weights.
void fstgate_autocast_exit(int previous) {
  try {
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(at::kCUDA, previous == 1);
  } catch (...) {
  }
}
}
