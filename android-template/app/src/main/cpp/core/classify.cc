#include "core/classify.h"

#include <cmath>

namespace mobilefer {

std::vector<float> Softmax(const float* logits, int count) {
  std::vector<float> out(count > 0 ? count : 0);
  if (count <= 0) return out;
  float max_value = logits[0];
  for (int i = 1; i < count; ++i) {
    if (logits[i] > max_value) max_value = logits[i];
  }
  float sum = 0.f;
  for (int i = 0; i < count; ++i) {
    out[i] = std::exp(logits[i] - max_value);
    sum += out[i];
  }
  for (int i = 0; i < count; ++i) out[i] = out[i] / sum;
  return out;
}

int ArgMax(const std::vector<float>& values) {
  int best = -1;
  for (int i = 0; i < static_cast<int>(values.size()); ++i) {
    if (best < 0 || values[i] > values[best]) best = i;
  }
  return best;
}

}  // namespace mobilefer
