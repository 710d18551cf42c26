// Classifier output helpers with the arithmetic of mobilefer.classify.classifier._softmax.
//
// Plain C++17, no TNN or Android headers.
#ifndef MOBILEFER_CORE_CLASSIFY_H_
#define MOBILEFER_CORE_CLASSIFY_H_

#include <vector>

namespace mobilefer {

// Numerically stable softmax in float32: e = exp(x - max(x)); e / sum(e) (sum left to right).
std::vector<float> Softmax(const float* logits, int count);

// Index of the first maximum (numpy.argmax), -1 when empty.
int ArgMax(const std::vector<float>& values);

}  // namespace mobilefer

#endif  // MOBILEFER_CORE_CLASSIFY_H_
