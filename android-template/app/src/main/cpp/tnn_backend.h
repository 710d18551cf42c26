// mobilefer::Network on TNN (github.com/Tencent/TNN): one TNN + Instance per model, input fed as an
// NCHW float Mat (normalisation is done by the core, so MatConvertParam stays identity), outputs read
// as NCHW float Mats on the CPU.
#ifndef MOBILEFER_TNN_BACKEND_H_
#define MOBILEFER_TNN_BACKEND_H_

#include <memory>
#include <string>

#include "core/config.h"
#include "core/network.h"
#include "engine_factory.h"

namespace mobilefer {

// Creates a TNN network for `model` with a fixed input shape {1, C, H, W} from `input`.
// `use_gpu`: OpenCL instead of the CPU (no fallback here; CreateEngine does that).
std::unique_ptr<Network> CreateTnnNetwork(const ModelData& model, const InputSpec& input, bool use_gpu,
                                          const RuntimeOptions& options, std::string* error);

}  // namespace mobilefer

#endif  // MOBILEFER_TNN_BACKEND_H_
