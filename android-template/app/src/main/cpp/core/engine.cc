#include "core/engine.h"

#include <chrono>
#include <utility>

#include "core/classify.h"
#include "core/image.h"
#include "core/smoothing.h"
#include "core/ultraface.h"

namespace mobilefer {

namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

class CoreEngine : public Engine {
 public:
  CoreEngine(const EngineConfig& config, std::unique_ptr<Network> detector, std::unique_ptr<Network> classifier,
             std::vector<float> priors, EngineObserver* observer)
      : config_(config),
        detector_(std::move(detector)),
        classifier_(std::move(classifier)),
        priors_(std::move(priors)),
        tracker_(config.smoothing),
        observer_(observer) {}

  bool Process(const Frame& frame, FrameResult* result, std::string* error) override;
  void ResetTracking() override {
    tracker_.Reset();
    frame_index_ = 0;
  }
  std::string Describe() const override {
    return DescribeConfig(config_) + "detector.runtime " + detector_->Describe() + "\nclassifier.runtime " +
           classifier_->Describe() + "\n";
  }
  const EngineConfig& config() const override { return config_; }

 private:
  bool Classify(const Image& rgb, const double box[4], int face, FaceResult* out, StageTimes* times,
                std::string* error);

  EngineConfig config_;
  std::unique_ptr<Network> detector_;
  std::unique_ptr<Network> classifier_;
  std::vector<float> priors_;
  SmoothingTracker tracker_;
  EngineObserver* observer_;
  int64_t frame_index_ = 0;
  // Reused buffers.
  Tensor det_input_;
  Tensor cls_input_;
  Tensor cls_flipped_;
  std::vector<Tensor> outputs_;
  std::vector<float> decoded_;
};

bool CoreEngine::Process(const Frame& frame, FrameResult* result, std::string* error) {
  const Clock::time_point start = Clock::now();
  *result = FrameResult();
  StageTimes& times = result->times;

  Clock::time_point t = Clock::now();
  Image rgb;
  if (!FrameToUprightRgb(frame, &rgb, error)) return false;
  result->width = rgb.width;
  result->height = rgb.height;
  times.convert_ms = MsSince(t);
  if (observer_) observer_->OnUprightFrame(rgb);

  const DetectorConfig& det = config_.detector;
  t = Clock::now();
  if (!MakeInputTensor(rgb, det.input, config_.gray_weights, &det_input_, error)) return false;
  times.detector_pre_ms = MsSince(t);
  if (observer_) observer_->OnDetectorInput(det_input_);

  t = Clock::now();
  if (!detector_->Run(det_input_, {det.scores_output, det.boxes_output}, &outputs_, error)) return false;
  times.detector_infer_ms = MsSince(t);

  t = Clock::now();
  const size_t num_priors = priors_.size() / 4;
  if (outputs_.size() != 2 || outputs_[0].data.size() != num_priors * 2 ||
      outputs_[1].data.size() != num_priors * 4) {
    if (error) {
      *error = "detector outputs do not match the priors: expected " + std::to_string(num_priors * 2) + " scores and " +
               std::to_string(num_priors * 4) + " box values";
    }
    return false;
  }
  decoded_.resize(num_priors * 4);
  DecodeBoxes(outputs_[1].data.data(), priors_, det.priors.center_variance, det.priors.size_variance, decoded_.data());
  const std::vector<int> keep = SelectBoxes(outputs_[0].data.data() + 1, 2, decoded_.data(),
                                            static_cast<int>(num_priors), det.postprocess);
  const float scale[4] = {static_cast<float>(rgb.width), static_cast<float>(rgb.height),
                          static_cast<float>(rgb.width), static_cast<float>(rgb.height)};
  result->faces.resize(keep.size());
  for (size_t k = 0; k < keep.size(); ++k) {
    FaceResult& face = result->faces[k];
    const float* b = decoded_.data() + 4 * static_cast<size_t>(keep[k]);
    for (int i = 0; i < 4; ++i) face.box[i] = b[i] * scale[i];
    face.score = outputs_[0].data[2 * static_cast<size_t>(keep[k]) + 1];
  }
  times.detector_post_ms = MsSince(t);

  std::vector<BoxD> boxes;
  std::vector<std::vector<float>> probs;
  for (size_t k = 0; k < result->faces.size(); ++k) {
    FaceResult& face = result->faces[k];
    const double box[4] = {face.box[0], face.box[1], face.box[2], face.box[3]};
    if (!Classify(rgb, box, static_cast<int>(k), &face, &times, error)) return false;
    boxes.push_back({box[0], box[1], box[2], box[3]});
    probs.push_back(face.probs);
  }

  t = Clock::now();
  if (config_.smoothing.enabled) {
    const std::vector<TrackOutput> tracked = tracker_.Update(frame_index_, boxes, probs);
    for (size_t k = 0; k < tracked.size(); ++k) {
      result->faces[k].track_id = tracked[k].track_id;
      result->faces[k].probs = tracked[k].probs;
    }
  }
  for (FaceResult& face : result->faces) face.label = ArgMax(face.probs);
  ++frame_index_;
  times.smoothing_ms = MsSince(t);
  times.total_ms = MsSince(start);
  return true;
}

bool CoreEngine::Classify(const Image& rgb, const double box[4], int face, FaceResult* out, StageTimes* times,
                          std::string* error) {
  const ClassifierConfig& cls = config_.classifier;
  Clock::time_point t = Clock::now();
  CropWindow window;
  if (!ComputeCropWindow(box, cls.crop, &window)) {
    if (error) *error = "detector returned an empty or non-finite box";
    return false;
  }
  out->crop = window;
  const Image crop = CropImage(ImageView(rgb), window, cls.crop.border);
  if (!MakeInputTensor(crop, cls.input, config_.gray_weights, &cls_input_, error)) return false;
  times->classifier_pre_ms += MsSince(t);
  if (observer_) observer_->OnClassifierInput(face, window, cls_input_);

  t = Clock::now();
  if (!classifier_->Run(cls_input_, {cls.logits_output}, &outputs_, error)) return false;
  if (outputs_.size() != 1 || static_cast<int>(outputs_[0].data.size()) != cls.num_classes) {
    if (error) *error = "classifier output does not have " + std::to_string(cls.num_classes) + " values";
    return false;
  }
  std::vector<float> logits = outputs_[0].data;
  if (cls.tta) {
    cls_flipped_.shape = cls_input_.shape;
    cls_flipped_.data.resize(cls_input_.data.size());
    FlipNchwHorizontal(cls_input_.data.data(), cls.input.channels(), cls.input.height, cls.input.width,
                       cls_flipped_.data.data());
    if (!classifier_->Run(cls_flipped_, {cls.logits_output}, &outputs_, error)) return false;
    if (outputs_.size() != 1 || outputs_[0].data.size() != logits.size()) {
      if (error) *error = "classifier output size changed between runs";
      return false;
    }
    for (size_t i = 0; i < logits.size(); ++i) logits[i] = (logits[i] + outputs_[0].data[i]) / 2.f;
  }
  times->classifier_infer_ms += MsSince(t);
  out->probs = Softmax(logits.data(), static_cast<int>(logits.size()));
  return true;
}

}  // namespace

bool FrameToUprightRgb(const Frame& frame, Image* rgb, std::string* error) {
  if (frame.data == nullptr || frame.width < 1 || frame.height < 1) {
    if (error) *error = "empty frame";
    return false;
  }
  Image converted;
  if (frame.format == FrameFormat::kRgba) {
    if (frame.row_stride < 4 * frame.width) {
      if (error) *error = "RGBA row stride is smaller than 4 * width";
      return false;
    }
    const ImageView view(frame.data, frame.width, frame.height, 4, frame.row_stride);
    if (!ConvertColor(view, PixelFormat::kRgba, ColorOrder::kRgb, GrayWeights(), &converted, error)) return false;
  } else {
    const uint8_t* vu = frame.vu ? frame.vu : frame.data + static_cast<size_t>(frame.row_stride) * frame.height;
    if (!ConvertNv21(frame.data, frame.row_stride, vu, frame.row_stride, frame.width, frame.height, ColorOrder::kRgb,
                     &converted, error)) {
      return false;
    }
  }
  if (frame.rotation_cw == 0 && !frame.mirror) {
    *rgb = std::move(converted);
    return true;
  }
  return Orient(ImageView(converted), frame.rotation_cw, frame.mirror, rgb, error);
}

bool MakeInputTensor(const Image& rgb, const InputSpec& spec, const GrayWeights& gray, Tensor* tensor,
                     std::string* error) {
  Image colored;
  const Image* src = &rgb;
  if (spec.color != ColorOrder::kRgb) {
    if (!ConvertColor(ImageView(rgb), PixelFormat::kRgb, spec.color, gray, &colored, error)) return false;
    src = &colored;
  }
  Image resized;
  if (src->width != spec.width || src->height != spec.height) {
    if (!Resize(ImageView(*src), spec.width, spec.height, spec.interpolation, &resized, error)) return false;
    src = &resized;
  }
  const int channels = spec.channels();
  tensor->shape = {1, channels, spec.height, spec.width};
  tensor->data.resize(static_cast<size_t>(channels) * spec.height * spec.width);
  NormalizeToNchw(ImageView(*src), spec.mean, spec.std, tensor->data.data());
  return true;
}

std::unique_ptr<Engine> CreateCoreEngine(const EngineConfig& config, std::unique_ptr<Network> detector,
                                         std::unique_ptr<Network> classifier, std::string* error,
                                         EngineObserver* observer) {
  const std::string problem = ValidateConfig(config);
  if (!problem.empty()) {
    if (error) *error = "invalid engine config: " + problem;
    return nullptr;
  }
  if (!detector || !classifier) {
    if (error) *error = "the engine needs a detector and a classifier network";
    return nullptr;
  }
  std::vector<float> priors = GeneratePriors(config.detector.input.width, config.detector.input.height,
                                             config.detector.priors);
  if (static_cast<int>(priors.size() / 4) != config.detector.priors.num_priors) {
    if (error) {
      *error = "detector.priors.num_priors is " + std::to_string(config.detector.priors.num_priors) + " but the " +
               "priors of a " + std::to_string(config.detector.input.width) + "x" +
               std::to_string(config.detector.input.height) + " input number " + std::to_string(priors.size() / 4);
    }
    return nullptr;
  }
  return std::unique_ptr<Engine>(
      new CoreEngine(config, std::move(detector), std::move(classifier), std::move(priors), observer));
}

}  // namespace mobilefer
