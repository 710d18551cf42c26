// Plain configuration structs of the native engine.
//
// Every value is filled at run time from the bundle manifest `mobilefer.json` (the Java/Kotlin side
// reads it with org.json and hands the values over through JNI; the host tests read them from the
// golden-vector folder). No model constant is written down in C++: the structs carry no defaults
// that matter, and `ValidateConfig` rejects a config that was left unfilled.
//
// Plain C++17, no TNN or Android headers.
#ifndef MOBILEFER_CORE_CONFIG_H_
#define MOBILEFER_CORE_CONFIG_H_

#include <string>
#include <vector>

namespace mobilefer {

// Channel order a network expects (bundle: "gray", "rgb", "bgr").
enum class ColorOrder { kGray = 0, kRgb = 1, kBgr = 2 };

// Resize interpolation (bundle: "linear", "nearest"; "area" is rejected by ValidateConfig).
enum class Interpolation { kLinear = 0, kNearest = 1, kArea = 2 };

// How pixels outside the image are filled when a crop window leaves it (bundle: "replicate", "constant").
enum class BorderMode { kReplicate = 0, kConstant = 1 };

// Parse helpers for the bundle's strings; return false for an unknown name.
bool ParseColorOrder(const std::string& name, ColorOrder* out);
bool ParseInterpolation(const std::string& name, Interpolation* out);
bool ParseBorderMode(const std::string& name, BorderMode* out);
const char* ColorOrderName(ColorOrder color);
const char* InterpolationName(Interpolation interpolation);
const char* BorderModeName(BorderMode border);

// Fixed-point RGB -> gray weights: gray = (R*r + G*g + B*b + (1 << (shift - 1))) >> shift
// (bundle: gray_weights; OpenCV's cvtColor(BGR2GRAY) for uint8 is r=9798, g=19235, b=3735, shift=15).
struct GrayWeights {
  int r = 0;
  int g = 0;
  int b = 0;
  int shift = 0;
};

// Input of one network: size, colour order and normalisation `(pixel - mean) / std` per channel.
struct InputSpec {
  std::string name;            // input blob name
  int width = 0;
  int height = 0;
  ColorOrder color = ColorOrder::kRgb;
  std::vector<double> mean;    // one per channel (pixel units)
  std::vector<double> std;     // one per channel (pixel units)
  Interpolation interpolation = Interpolation::kLinear;

  int channels() const { return color == ColorOrder::kGray ? 1 : 3; }
};

// UltraFace priors (SSD anchors) and box decoding.
struct PriorSpec {
  std::vector<std::vector<int>> min_boxes;  // prior sides in input pixels, one list per head
  std::vector<int> strides;                 // feature map of head k: ceil(size / strides[k])
  double center_variance = 0.0;
  double size_variance = 0.0;
  bool clamp = true;                         // clamp priors to [0, 1]
  int num_priors = 0;                        // expected count (checked against the generated priors)
};

// Face selection after decoding.
struct PostprocessSpec {
  double score_threshold = 0.0;  // keep face score > threshold (strict)
  double iou_threshold = 0.0;    // hard NMS: drop a box whose IoU with a kept box is > threshold
  int candidate_size = 0;        // best-scored boxes that enter NMS
  int top_k = -1;                // maximum faces, <= 0 for no limit
};

// CropRule of mobilefer.preset (see its docstring).
struct CropSpec {
  double margin = 0.0;
  bool square = true;
  double shift_y = 0.0;
  BorderMode border = BorderMode::kReplicate;
};

// Temporal smoothing of mobilefer.video.SmoothingTracker.
struct SmoothingSpec {
  bool enabled = true;
  double alpha = 0.0;
  double match_iou = 0.0;
  int max_age = 0;
};

struct DetectorConfig {
  std::string name;
  InputSpec input;
  std::string scores_output;  // (1, A, 2) soft-maxed [background, face]
  std::string boxes_output;   // (1, A, 4) raw regressions
  PriorSpec priors;
  PostprocessSpec postprocess;
};

struct ClassifierConfig {
  std::string name;
  InputSpec input;
  std::string logits_output;  // (1, K) logits
  int num_classes = 0;
  CropSpec crop;
  bool tta = false;           // average the logits of the crop and its mirror image
};

struct EngineConfig {
  GrayWeights gray_weights;
  DetectorConfig detector;
  ClassifierConfig classifier;
  SmoothingSpec smoothing;
};

// Checks that every field is filled and consistent. Returns an empty string when valid, else a
// message naming the offending field.
std::string ValidateConfig(const EngineConfig& config);
std::string ValidateInputSpec(const InputSpec& input, const std::string& what);
std::string ValidateGrayWeights(const GrayWeights& weights);

// One-line-per-field human readable dump (logged by the app, compared by the host JNI test).
std::string DescribeConfig(const EngineConfig& config);

}  // namespace mobilefer

#endif  // MOBILEFER_CORE_CONFIG_H_
