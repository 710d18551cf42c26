// The one thing the engine needs from an inference runtime: run a network on one NCHW float32 tensor
// and return named float32 outputs. tnn_backend.cc implements it with TNN; the host tests implement it
// with recorded outputs. Preprocessing stays in the core, so every backend sees identical inputs.
//
// Plain C++17, no TNN or Android headers.
#ifndef MOBILEFER_CORE_NETWORK_H_
#define MOBILEFER_CORE_NETWORK_H_

#include <string>
#include <vector>

namespace mobilefer {

struct Tensor {
  std::vector<int> shape;  // e.g. {1, C, H, W}
  std::vector<float> data;

  size_t count() const {
    size_t n = shape.empty() ? 0 : 1;
    for (int d : shape) n *= static_cast<size_t>(d < 0 ? 0 : d);
    return n;
  }
};

class Network {
 public:
  virtual ~Network() = default;

  // Runs the network on `input` (shape {1, C, H, W}) and fills `outputs` with one tensor per name in
  // `output_names`, in that order. Returns false and sets `error` on failure.
  virtual bool Run(const Tensor& input, const std::vector<std::string>& output_names, std::vector<Tensor>* outputs,
                   std::string* error) = 0;

  // What runs the network, for the UI and logs (e.g. "TNN ARM", "TNN OpenCL").
  virtual std::string Describe() const = 0;
};

}  // namespace mobilefer

#endif  // MOBILEFER_CORE_NETWORK_H_
