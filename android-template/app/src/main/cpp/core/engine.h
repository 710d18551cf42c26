// The engine interface the JNI bridge talks to, and the core implementation on two Networks.
//
// Per frame: frame (RGBA or NV21, any rotation, optional mirror) -> upright RGB -> detector input
// (preset colour, resize, normalise) -> detector -> priors decoding + NMS -> boxes in upright-frame
// pixels -> per face: crop rule, classifier colour, resize, normalise -> classifier -> softmax ->
// temporal smoothing -> label = argmax.
//
// Plain C++17, no TNN or Android headers.
#ifndef MOBILEFER_CORE_ENGINE_H_
#define MOBILEFER_CORE_ENGINE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/crop.h"
#include "core/network.h"

namespace mobilefer {

enum class FrameFormat { kRgba = 0, kNv21 = 1 };

// A camera frame, borrowed for the duration of Engine::Process.
struct Frame {
  FrameFormat format = FrameFormat::kRgba;
  const uint8_t* data = nullptr;  // RGBA pixels, or the NV21 Y plane
  const uint8_t* vu = nullptr;    // NV21 only: interleaved V/U plane (nullptr: right after the Y plane)
  int width = 0;                  // as stored (before rotation)
  int height = 0;
  int row_stride = 0;             // bytes per row of `data` (RGBA: >= 4 * width; NV21: >= width)
  int rotation_cw = 0;            // clockwise rotation that makes the frame upright: 0, 90, 180, 270
  bool mirror = false;            // mirror left-right after rotating (front camera preview)
};

struct FaceResult {
  float box[4] = {0, 0, 0, 0};  // x1, y1, x2, y2 in upright-frame pixels (not clipped)
  float score = 0.f;            // detector face score
  int label = -1;               // argmax of probs
  std::vector<float> probs;     // smoothed class probabilities (raw when smoothing is off)
  int track_id = -1;            // -1 when smoothing is off
  CropWindow crop;              // the classifier's crop window
};

// Wall time of each stage, in milliseconds.
struct StageTimes {
  double convert_ms = 0;
  double detector_pre_ms = 0;
  double detector_infer_ms = 0;
  double detector_post_ms = 0;
  double classifier_pre_ms = 0;
  double classifier_infer_ms = 0;
  double smoothing_ms = 0;
  double total_ms = 0;
};

struct FrameResult {
  int width = 0;   // upright frame size
  int height = 0;
  std::vector<FaceResult> faces;  // best detector score first
  StageTimes times;
};

// What the JNI bridge (and host programs) use; implementations need not involve TNN.
class Engine {
 public:
  virtual ~Engine() = default;
  virtual bool Process(const Frame& frame, FrameResult* result, std::string* error) = 0;
  // Forgets all tracks (e.g. after switching cameras).
  virtual void ResetTracking() = 0;
  // Config dump plus what runs each network.
  virtual std::string Describe() const = 0;
  virtual const EngineConfig& config() const = 0;
};

// Observes intermediate values of CoreEngine (host tests compare them with golden vectors).
class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  virtual void OnUprightFrame(const Image& rgb) { (void)rgb; }
  virtual void OnDetectorInput(const Tensor& input) { (void)input; }
  virtual void OnClassifierInput(int face, const CropWindow& window, const Tensor& input) {
    (void)face; (void)window; (void)input;
  }
};

// The core engine on a detector and a classifier network. Returns nullptr and sets `error` when the
// config is invalid (see ValidateConfig) or a network is missing. `observer` may be null; it must
// outlive the engine.
std::unique_ptr<Engine> CreateCoreEngine(const EngineConfig& config, std::unique_ptr<Network> detector,
                                         std::unique_ptr<Network> classifier, std::string* error,
                                         EngineObserver* observer = nullptr);

// Converts a frame to an upright RGB image (rotation, then mirror).
bool FrameToUprightRgb(const Frame& frame, Image* rgb, std::string* error);

// Detector/classifier input tensor {1, C, H, W} from an RGB image: colour order (gray with `gray`),
// resize, normalise.
bool MakeInputTensor(const Image& rgb, const InputSpec& spec, const GrayWeights& gray, Tensor* tensor,
                     std::string* error);

}  // namespace mobilefer

#endif  // MOBILEFER_CORE_ENGINE_H_
