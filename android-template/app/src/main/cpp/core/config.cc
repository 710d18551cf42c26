#include "core/config.h"

#include <cmath>
#include <cstdio>
#include <sstream>

namespace mobilefer {

bool ParseColorOrder(const std::string& name, ColorOrder* out) {
  if (name == "gray") {
    *out = ColorOrder::kGray;
  } else if (name == "rgb") {
    *out = ColorOrder::kRgb;
  } else if (name == "bgr") {
    *out = ColorOrder::kBgr;
  } else {
    return false;
  }
  return true;
}

bool ParseInterpolation(const std::string& name, Interpolation* out) {
  if (name == "linear") {
    *out = Interpolation::kLinear;
  } else if (name == "nearest") {
    *out = Interpolation::kNearest;
  } else if (name == "area") {
    *out = Interpolation::kArea;
  } else {
    return false;
  }
  return true;
}

bool ParseBorderMode(const std::string& name, BorderMode* out) {
  if (name == "replicate") {
    *out = BorderMode::kReplicate;
  } else if (name == "constant") {
    *out = BorderMode::kConstant;
  } else {
    return false;
  }
  return true;
}

const char* ColorOrderName(ColorOrder color) {
  switch (color) {
    case ColorOrder::kGray: return "gray";
    case ColorOrder::kRgb: return "rgb";
    case ColorOrder::kBgr: return "bgr";
  }
  return "?";
}

const char* InterpolationName(Interpolation interpolation) {
  switch (interpolation) {
    case Interpolation::kLinear: return "linear";
    case Interpolation::kNearest: return "nearest";
    case Interpolation::kArea: return "area";
  }
  return "?";
}

const char* BorderModeName(BorderMode border) {
  switch (border) {
    case BorderMode::kReplicate: return "replicate";
    case BorderMode::kConstant: return "constant";
  }
  return "?";
}

namespace {

bool Finite(double v) { return std::isfinite(v); }

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

template <typename T>
std::string List(const std::vector<T>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ",";
    out += Num(static_cast<double>(values[i]));
  }
  return out + "]";
}

}  // namespace

std::string ValidateInputSpec(const InputSpec& input, const std::string& what) {
  if (input.name.empty()) return what + ".input.name is empty";
  if (input.width < 1 || input.height < 1) return what + ".input width/height must be >= 1";
  const size_t channels = static_cast<size_t>(input.channels());
  if (input.mean.size() != channels || input.std.size() != channels) {
    return what + ".input.mean/std need " + std::to_string(channels) + " value(s) for color " +
           ColorOrderName(input.color);
  }
  for (size_t c = 0; c < channels; ++c) {
    if (!Finite(input.mean[c])) return what + ".input.mean must be finite";
    if (!Finite(input.std[c]) || input.std[c] <= 0.0) return what + ".input.std must be finite and > 0";
  }
  if (input.interpolation == Interpolation::kArea) {
    return what + ".input.interpolation 'area' is not implemented by the native core (only 'linear' and "
                  "'nearest', which match OpenCV bit for bit); export with a linear preset";
  }
  return "";
}

std::string ValidateGrayWeights(const GrayWeights& w) {
  if (w.shift < 1 || w.shift > 20 || w.r < 0 || w.g < 0 || w.b < 0 || w.r + w.g + w.b != (1 << w.shift)) {
    return "gray_weights must be non-negative r, g, b summing to 1 << shift (1 <= shift <= 20)";
  }
  return "";
}

std::string ValidateConfig(const EngineConfig& config) {
  std::string err = ValidateGrayWeights(config.gray_weights);
  if (!err.empty()) return err;
  const DetectorConfig& d = config.detector;
  err = ValidateInputSpec(d.input, "detector");
  if (!err.empty()) return err;
  if (d.scores_output.empty() || d.boxes_output.empty()) return "detector.outputs.scores/boxes are empty";
  const PriorSpec& p = d.priors;
  if (p.strides.empty() || p.strides.size() != p.min_boxes.size()) {
    return "detector.priors: need one min_boxes list per stride (got " + std::to_string(p.strides.size()) +
           " strides, " + std::to_string(p.min_boxes.size()) + " lists)";
  }
  for (size_t k = 0; k < p.strides.size(); ++k) {
    if (p.strides[k] < 1) return "detector.priors.strides must be >= 1";
    if (p.min_boxes[k].empty()) return "detector.priors.min_boxes has an empty list";
    for (int side : p.min_boxes[k]) {
      if (side < 1) return "detector.priors.min_boxes must be >= 1";
    }
  }
  if (!Finite(p.center_variance) || p.center_variance <= 0.0 || !Finite(p.size_variance) ||
      p.size_variance <= 0.0) {
    return "detector.priors.center_variance/size_variance must be > 0";
  }
  if (p.num_priors < 1) return "detector.priors.num_priors must be >= 1";
  const PostprocessSpec& post = d.postprocess;
  if (!(post.score_threshold >= 0.0 && post.score_threshold <= 1.0)) {
    return "detector.postprocess.score_threshold must be in [0, 1]";
  }
  if (!(post.iou_threshold > 0.0 && post.iou_threshold <= 1.0)) {
    return "detector.postprocess.iou_threshold must be in (0, 1]";
  }
  if (post.candidate_size < 1) return "detector.postprocess.candidate_size must be >= 1";

  const ClassifierConfig& c = config.classifier;
  err = ValidateInputSpec(c.input, "classifier");
  if (!err.empty()) return err;
  if (c.logits_output.empty()) return "classifier.outputs.logits is empty";
  if (c.num_classes < 1) return "classifier.labels is empty";
  if (!Finite(c.crop.margin) || c.crop.margin <= -0.5) return "classifier.crop.margin must be > -0.5";
  if (!Finite(c.crop.shift_y)) return "classifier.crop.shift_y must be finite";

  const SmoothingSpec& s = config.smoothing;
  if (s.enabled) {
    if (!(s.alpha >= 0.0 && s.alpha < 1.0)) return "smoothing.alpha must be in [0, 1)";
    if (!(s.match_iou > 0.0 && s.match_iou <= 1.0)) return "smoothing.match_iou must be in (0, 1]";
    if (s.max_age < 0) return "smoothing.max_age must be >= 0";
  }
  return "";
}

std::string DescribeConfig(const EngineConfig& config) {
  std::ostringstream out;
  auto input = [&out](const char* what, const InputSpec& in) {
    out << what << ".input " << in.name << " " << in.width << "x" << in.height << " " << ColorOrderName(in.color)
        << " mean=" << List(in.mean) << " std=" << List(in.std) << " " << InterpolationName(in.interpolation)
        << "\n";
  };
  const GrayWeights& g = config.gray_weights;
  out << "gray_weights r=" << g.r << " g=" << g.g << " b=" << g.b << " shift=" << g.shift << "\n";
  const DetectorConfig& d = config.detector;
  out << "detector.name " << d.name << "\n";
  input("detector", d.input);
  out << "detector.outputs " << d.scores_output << " " << d.boxes_output << "\n";
  out << "detector.priors strides=" << List(d.priors.strides) << " min_boxes=[";
  for (size_t k = 0; k < d.priors.min_boxes.size(); ++k) out << (k ? "," : "") << List(d.priors.min_boxes[k]);
  out << "] center_variance=" << Num(d.priors.center_variance) << " size_variance=" << Num(d.priors.size_variance)
      << " clamp=" << (d.priors.clamp ? 1 : 0) << " num_priors=" << d.priors.num_priors << "\n";
  out << "detector.postprocess score_threshold=" << Num(d.postprocess.score_threshold)
      << " iou_threshold=" << Num(d.postprocess.iou_threshold) << " candidate_size=" << d.postprocess.candidate_size
      << " top_k=" << d.postprocess.top_k << "\n";
  const ClassifierConfig& c = config.classifier;
  out << "classifier.name " << c.name << "\n";
  input("classifier", c.input);
  out << "classifier.outputs " << c.logits_output << " num_classes=" << c.num_classes << " tta=" << (c.tta ? 1 : 0)
      << "\n";
  out << "classifier.crop margin=" << Num(c.crop.margin) << " square=" << (c.crop.square ? 1 : 0)
      << " shift_y=" << Num(c.crop.shift_y) << " border=" << BorderModeName(c.crop.border) << "\n";
  out << "smoothing enabled=" << (config.smoothing.enabled ? 1 : 0) << " alpha=" << Num(config.smoothing.alpha)
      << " match_iou=" << Num(config.smoothing.match_iou) << " max_age=" << config.smoothing.max_age << "\n";
  return out.str();
}

}  // namespace mobilefer
