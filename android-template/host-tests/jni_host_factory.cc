// CreateEngine for the host JNI test: the core engine on networks that replay golden outputs.
// ModelData.proto of the detector holds "<golden dir>|<image prefix>" (e.g. ".../golden|img0"); the
// classifier replays that image's classifier-0 logits, face after face, cyclically. With use_gpu the
// factory reports the GPU fallback warning the TNN factory would give on a device without OpenCL.
#include <memory>
#include <string>
#include <vector>

#include "core/engine.h"
#include "engine_factory.h"
#include "golden_io.h"
#include "replay_network.h"

namespace mobilefer {

std::unique_ptr<Engine> CreateEngine(const EngineConfig& config, const ModelData& detector,
                                     const ModelData& classifier, const RuntimeOptions& options,
                                     std::string* error) {
  (void)classifier;
  const size_t bar = detector.proto.find('|');
  if (bar == std::string::npos) {
    if (error) *error = "host replay factory: detector proto must be '<golden dir>|<image prefix>'";
    return nullptr;
  }
  const std::string dir = detector.proto.substr(0, bar);
  const std::string prefix = detector.proto.substr(bar + 1);
  try {
    const golden::Array scores = golden::ReadArray(dir, prefix + "_det_scores");
    const golden::Array locs = golden::ReadArray(dir, prefix + "_det_locs");
    golden::ReplayNetwork::Step det_step;
    det_step.outputs = {Tensor{{1, scores.dim(0), 2}, scores.floats()}, Tensor{{1, locs.dim(0), 4}, locs.floats()}};
    const std::vector<float> logits = golden::ReadArray(dir, prefix + "_cls0_logits").floats();
    const int k = config.classifier.num_classes;
    std::vector<golden::ReplayNetwork::Step> cls_steps;
    for (size_t f = 0; k > 0 && (f + 1) * k <= logits.size(); ++f) {
      golden::ReplayNetwork::Step step;
      step.outputs = {Tensor{{1, k}, std::vector<float>(logits.begin() + f * k, logits.begin() + (f + 1) * k)}};
      cls_steps.push_back(step);
    }
    std::unique_ptr<Network> det(new golden::ReplayNetwork(
        {config.detector.scores_output, config.detector.boxes_output}, {det_step}, "detector " + prefix, true));
    std::unique_ptr<Network> cls(
        new golden::ReplayNetwork({config.classifier.logits_output}, cls_steps, "classifier " + prefix, true));
    std::unique_ptr<Engine> engine = CreateCoreEngine(config, std::move(det), std::move(cls), error);
    if (engine && error) {
      *error = options.use_gpu ? "detector: GPU unavailable, using the CPU (host replay). " : "";
    }
    return engine;
  } catch (const std::exception& e) {
    if (error) *error = std::string("host replay factory: ") + e.what();
    return nullptr;
  }
}

}  // namespace mobilefer
