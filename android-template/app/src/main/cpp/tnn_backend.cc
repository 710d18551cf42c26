#include "tnn_backend.h"

#include <cstring>
#include <utility>
#include <vector>

#include "tnn/core/common.h"
#include "tnn/core/instance.h"
#include "tnn/core/mat.h"
#include "tnn/core/status.h"
#include "tnn/core/tnn.h"
#include "tnn/utils/blob_converter.h"

// The CPU device TNN runs on and hands outputs back on: ARM on Android, X86 on a desktop build (a
// host build of TNN with TNN_X86_ENABLE=ON); override with -DMOBILEFER_TNN_CPU_DEVICE=DEVICE_NAIVE.
#ifndef MOBILEFER_TNN_CPU_DEVICE
#if defined(__ANDROID__) || defined(__aarch64__) || defined(__arm__)
#define MOBILEFER_TNN_CPU_DEVICE DEVICE_ARM
#else
#define MOBILEFER_TNN_CPU_DEVICE DEVICE_X86
#endif
#endif

namespace mobilefer {

namespace {

std::string StatusText(tnn::Status status) {
  return std::to_string(static_cast<int>(status)) + " (" + status.description() + ")";
}

tnn::Precision ToTnn(Precision precision) {
  switch (precision) {
    case Precision::kHigh: return tnn::PRECISION_HIGH;
    case Precision::kNormal: return tnn::PRECISION_NORMAL;
    case Precision::kLow: return tnn::PRECISION_LOW;
  }
  return tnn::PRECISION_HIGH;
}

class TnnNetwork : public Network {
 public:
  TnnNetwork(std::shared_ptr<tnn::TNN> net, std::shared_ptr<tnn::Instance> instance, std::string input_name,
             tnn::DimsVector input_dims, std::string description)
      : net_(std::move(net)),
        instance_(std::move(instance)),
        input_name_(std::move(input_name)),
        input_dims_(std::move(input_dims)),
        description_(std::move(description)) {}

  ~TnnNetwork() override {
    instance_.reset();  // the instance before the TNN that created it
    net_.reset();
  }

  bool Run(const Tensor& input, const std::vector<std::string>& output_names, std::vector<Tensor>* outputs,
           std::string* error) override {
    const tnn::DimsVector dims(input.shape.begin(), input.shape.end());
    if (dims != input_dims_ || input.data.size() != input.count()) {
      if (error) *error = "TNN input shape differs from the one the instance was created with";
      return false;
    }
    auto mat = std::make_shared<tnn::Mat>(tnn::MOBILEFER_TNN_CPU_DEVICE, tnn::NCHW_FLOAT, dims,
                                          const_cast<float*>(input.data.data()));
    tnn::MatConvertParam identity;  // scale 1, bias 0: the tensor is already normalised
    tnn::Status status = instance_->SetInputMat(mat, identity, input_name_);
    if (status != tnn::TNN_OK) {
      if (error) *error = "TNN SetInputMat failed: " + StatusText(status);
      return false;
    }
    status = instance_->Forward();
    if (status != tnn::TNN_OK) {
      if (error) *error = "TNN Forward failed: " + StatusText(status);
      return false;
    }
    outputs->resize(output_names.size());
    for (size_t i = 0; i < output_names.size(); ++i) {
      std::shared_ptr<tnn::Mat> out;
      status = instance_->GetOutputMat(out, tnn::MatConvertParam(), output_names[i], tnn::MOBILEFER_TNN_CPU_DEVICE,
                                       tnn::NCHW_FLOAT);
      if (status != tnn::TNN_OK || !out) {
        if (error) *error = "TNN GetOutputMat('" + output_names[i] + "') failed: " + StatusText(status);
        return false;
      }
      Tensor& t = (*outputs)[i];
      const tnn::DimsVector out_dims = out->GetDims();
      t.shape.assign(out_dims.begin(), out_dims.end());
      const size_t count = t.count();
      t.data.resize(count);
      std::memcpy(t.data.data(), out->GetData(), count * sizeof(float));
    }
    return true;
  }

  std::string Describe() const override { return description_; }

 private:
  std::shared_ptr<tnn::TNN> net_;
  std::shared_ptr<tnn::Instance> instance_;
  std::string input_name_;
  tnn::DimsVector input_dims_;
  std::string description_;
};

}  // namespace

std::unique_ptr<Network> CreateTnnNetwork(const ModelData& model, const InputSpec& input, bool use_gpu,
                                          const RuntimeOptions& options, std::string* error) {
  tnn::ModelConfig model_config;
  model_config.model_type = tnn::MODEL_TYPE_TNN;
  model_config.params = {model.proto, model.model};
  auto net = std::make_shared<tnn::TNN>();
  tnn::Status status = net->Init(model_config);
  if (status != tnn::TNN_OK) {
    if (error) *error = "TNN::Init failed (is it a .tnnproto/.tnnmodel pair?): " + StatusText(status);
    return nullptr;
  }
  tnn::NetworkConfig network_config;
  network_config.device_type = use_gpu ? tnn::DEVICE_OPENCL : tnn::MOBILEFER_TNN_CPU_DEVICE;
  network_config.precision = ToTnn(options.precision);
  const tnn::DimsVector dims = {1, input.channels(), input.height, input.width};
  tnn::InputShapesMap shapes;
  shapes[input.name] = dims;
  tnn::Status create_status;
  std::shared_ptr<tnn::Instance> instance = net->CreateInst(network_config, create_status, shapes);
  if (create_status != tnn::TNN_OK || !instance) {
    if (error) {
      *error = std::string("TNN CreateInst on ") + (use_gpu ? "OpenCL" : "CPU") + " failed: " + StatusText(create_status);
    }
    return nullptr;
  }
  if (!use_gpu && options.num_threads > 0) instance->SetCpuNumThreads(options.num_threads);
  const std::string description = use_gpu ? "TNN OpenCL" : "TNN CPU";
  return std::unique_ptr<Network>(new TnnNetwork(net, instance, input.name, dims, description));
}

std::unique_ptr<Engine> CreateEngine(const EngineConfig& config, const ModelData& detector,
                                     const ModelData& classifier, const RuntimeOptions& options,
                                     std::string* error) {
  const std::string problem = ValidateConfig(config);
  if (!problem.empty()) {
    if (error) *error = "invalid engine config: " + problem;
    return nullptr;
  }
  std::string warnings;
  auto make = [&](const ModelData& model, const InputSpec& input, const char* what) -> std::unique_ptr<Network> {
    std::string err;
    if (options.use_gpu) {
      std::unique_ptr<Network> gpu = CreateTnnNetwork(model, input, true, options, &err);
      if (gpu) return gpu;
      warnings += std::string(what) + ": GPU unavailable, using the CPU (" + err + "). ";
      err.clear();
    }
    std::unique_ptr<Network> cpu = CreateTnnNetwork(model, input, false, options, &err);
    if (!cpu && error) *error = std::string(what) + ": " + err;
    return cpu;
  };
  std::unique_ptr<Network> det = make(detector, config.detector.input, "detector");
  if (!det) return nullptr;
  std::unique_ptr<Network> cls = make(classifier, config.classifier.input, "classifier");
  if (!cls) return nullptr;
  std::unique_ptr<Engine> engine = CreateCoreEngine(config, std::move(det), std::move(cls), error);
  if (engine && error) *error = warnings;
  return engine;
}

}  // namespace mobilefer
