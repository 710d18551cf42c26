// Host unit tests of the native core against golden vectors from mobilefer.export.golden.
//
// Usage: test_core GOLDEN_DIR [OUT_DIR]
// Prints one line per check:  CHECK <name> <PASS|FAIL> max_diff=<v> tol=<t> n=<count> [note]
// then "core: N passed, M failed". Exit code 0 only when every check passed. OUT_DIR (optional)
// receives describe_cls0.txt (the config dump the JNI host test compares with).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/classify.h"
#include "core/config.h"
#include "core/crop.h"
#include "core/engine.h"
#include "core/image.h"
#include "core/smoothing.h"
#include "core/ultraface.h"
#include "golden_io.h"
#include "replay_network.h"

using golden::Array;
using golden::ReadArray;
using mobilefer::Image;
using mobilefer::ImageView;

namespace {

int g_passed = 0;
int g_failed = 0;

void Report(const std::string& name, double max_diff, double tol, size_t n, const std::string& note = "") {
  const bool ok = std::isfinite(max_diff) && max_diff <= tol;
  (ok ? g_passed : g_failed)++;
  std::printf("CHECK %s %s max_diff=%.9g tol=%.3g n=%zu%s%s\n", name.c_str(), ok ? "PASS" : "FAIL", max_diff, tol, n,
              note.empty() ? "" : " ", note.c_str());
  std::fflush(stdout);
}

void Expect(const std::string& name, bool ok, const std::string& note = "") {
  Report(name, ok ? 0.0 : 1.0, 0.0, 1, note);
}

double ImageDiff(const Image& a, const Array& ref, size_t* differing = nullptr) {
  const Image b = ref.image();
  if (a.width != b.width || a.height != b.height || a.channels != b.channels) return INFINITY;
  double m = 0;
  size_t count = 0;
  for (size_t i = 0; i < a.data.size(); ++i) {
    const int d = std::abs(static_cast<int>(a.data[i]) - static_cast<int>(b.data[i]));
    if (d) ++count;
    m = std::max(m, static_cast<double>(d));
  }
  if (differing) *differing = count;
  return m;
}

double FloatDiff(const float* a, const float* b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    if (!(d <= m)) m = d;  // NaN propagates as a failure
  }
  return m;
}

// |a - b| / max(1, |b|): absolute below 1, relative above.
double RelDiff(const float* a, const float* b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - b[i]) / std::max(1.0, std::fabs(static_cast<double>(b[i])));
    if (!(d <= m)) m = d;
  }
  return m;
}

Image PadRows(const Image& src, int extra, int* stride) {
  *stride = src.width * src.channels + extra;
  Image padded(*stride, src.height, 1);
  for (int y = 0; y < src.height; ++y) {
    std::memcpy(padded.row(y), src.row(y), static_cast<size_t>(src.width) * src.channels);
    std::memset(padded.row(y) + src.width * src.channels, 0xAB, extra);
  }
  return padded;
}

Image Rgb(const Image& rgba) {
  Image out;
  std::string err;
  mobilefer::ConvertColor(ImageView(rgba), mobilefer::PixelFormat::kRgba, mobilefer::ColorOrder::kRgb,
                          mobilefer::GrayWeights(), &out, &err);
  return out;
}

// ---------------------------------------------------------------- checks
void CheckConversions(const std::string& dir, const golden::Config& cfg, const mobilefer::GrayWeights& gray) {
  using mobilefer::ColorOrder;
  using mobilefer::PixelFormat;
  const int images = cfg.Int("conversion.images");
  double rgba_max = 0, nv21_max = 0, stride_max = 0;
  size_t n = 0;
  // The photos, then a patch of random colours (photos rarely hit the colours where a 14-bit gray
  // formula differs from OpenCV's 15-bit one).
  for (int i = 0; i <= images; ++i) {
    const std::string p = i < images ? "img" + std::to_string(i) : std::string("colors");
    const Image rgba = ReadArray(dir, p + "_rgba").image();
    const struct { ColorOrder order; const char* ref; } targets[] = {
        {ColorOrder::kGray, "gray"}, {ColorOrder::kRgb, "rgb"}, {ColorOrder::kBgr, "bgr"}};
    int stride = 0;
    const Image padded = PadRows(rgba, 12, &stride);
    for (const auto& t : targets) {
      Image out;
      std::string err;
      mobilefer::ConvertColor(ImageView(rgba), PixelFormat::kRgba, t.order, gray, &out, &err);
      const Array ref = ReadArray(dir, p + "_rgba_" + t.ref);
      rgba_max = std::max(rgba_max, ImageDiff(out, ref));
      Image strided;
      mobilefer::ConvertColor(ImageView(padded.data.data(), rgba.width, rgba.height, 4, stride), PixelFormat::kRgba,
                              t.order, gray, &strided, &err);
      stride_max = std::max(stride_max, ImageDiff(strided, ref));
      n += out.data.size();
    }
    const Array nv21 = ReadArray(dir, p + "_nv21");
    const int w = nv21.dim(1), h = nv21.dim(0) * 2 / 3;
    for (const auto& t : targets) {
      Image out;
      std::string err;
      mobilefer::ConvertNv21(nv21.as<uint8_t>(), w, nv21.as<uint8_t>() + static_cast<size_t>(w) * h, w, w, h, t.order,
                             &out, &err);
      nv21_max = std::max(nv21_max, ImageDiff(out, ReadArray(dir, p + "_nv21_" + t.ref)));
    }
  }
  Report("convert.rgba_to_gray_rgb_bgr", rgba_max, 0, n, "vs cv2.cvtColor COLOR_RGBA2{GRAY,RGB,BGR}");
  Report("convert.rgba_row_stride", stride_max, 0, n);
  Report("convert.nv21_to_rgb_bgr_gray", nv21_max, 0, n, "vs cv2.cvtColor COLOR_YUV2{RGB,BGR,GRAY}_NV21");
}

void CheckOrientation(const std::string& dir) {
  const Image src = ReadArray(dir, "orient_src").image();
  double m = 0;
  size_t n = 0;
  for (int degrees : {0, 90, 180, 270}) {
    for (int mirror : {0, 1}) {
      Image out;
      std::string err;
      if (!mobilefer::Orient(ImageView(src), degrees, mirror != 0, &out, &err)) m = INFINITY;
      m = std::max(m, ImageDiff(out, ReadArray(dir, "orient_" + std::to_string(degrees) + "_" + std::to_string(mirror))));
      n += out.data.size();
    }
  }
  Report("orient.rotate_mirror", m, 0, n, "vs cv2.rotate + cv2.flip");
}

void CheckResize(const std::string& dir, const golden::Config& cfg) {
  const int cases = cfg.Int("resize.cases");
  double linear = 0, nearest = 0;
  size_t n = 0, differing = 0;
  for (int k = 0; k < cases; ++k) {
    const std::string p = "resize" + std::to_string(k);
    const Image src = ReadArray(dir, p + "_src").image();
    const int w = cfg.Int(p + ".size", 0), h = cfg.Int(p + ".size", 1);
    Image out;
    std::string err;
    mobilefer::Resize(ImageView(src), w, h, mobilefer::Interpolation::kLinear, &out, &err);
    size_t diff_count = 0;
    linear = std::max(linear, ImageDiff(out, ReadArray(dir, p + "_linear"), &diff_count));
    differing += diff_count;
    mobilefer::Resize(ImageView(src), w, h, mobilefer::Interpolation::kNearest, &out, &err);
    nearest = std::max(nearest, ImageDiff(out, ReadArray(dir, p + "_nearest")));
    n += out.data.size();
  }
  Report("resize.linear", linear, 1, n, "vs cv2.resize INTER_LINEAR; differing_values=" + std::to_string(differing));
  Report("resize.nearest", nearest, 0, n, "vs cv2.resize INTER_NEAREST");
}

void CheckDetector(const std::string& dir, const golden::Config& cfg, const mobilefer::EngineConfig& config) {
  const mobilefer::DetectorConfig& d = config.detector;
  const std::vector<float> priors = mobilefer::GeneratePriors(d.input.width, d.input.height, d.priors);
  const Array ref = ReadArray(dir, "priors");
  Report("ultraface.priors", priors.size() == ref.count() ? FloatDiff(priors.data(), ref.as<float>(), priors.size())
                                                          : INFINITY,
         1e-7, priors.size() / 4, "vs generate_priors");
  const int images = cfg.Int("images");
  double decode = 0, boxes_rel = 0, scores = 0, det_input = 0;
  bool keep_equal = true, keep_own_equal = true;
  size_t kept = 0;
  for (int i = 0; i < images; ++i) {
    const std::string p = "img" + std::to_string(i);
    const std::vector<float> locs = ReadArray(dir, p + "_det_locs").floats();
    const std::vector<float> sc = ReadArray(dir, p + "_det_scores").floats();
    const std::vector<float> ref_decoded = ReadArray(dir, p + "_det_decoded").floats();
    std::vector<float> decoded(priors.size());
    mobilefer::DecodeBoxes(locs.data(), priors, d.priors.center_variance, d.priors.size_variance, decoded.data());
    decode = std::max(decode, decoded.size() == ref_decoded.size()
                                  ? FloatDiff(decoded.data(), ref_decoded.data(), decoded.size()) : INFINITY);
    const int count = static_cast<int>(priors.size() / 4);
    const std::vector<int> keep_ref_input = mobilefer::SelectBoxes(sc.data() + 1, 2, ref_decoded.data(), count, d.postprocess);
    const std::vector<int> keep = mobilefer::SelectBoxes(sc.data() + 1, 2, decoded.data(), count, d.postprocess);
    const std::vector<int32_t> ref_keep = ReadArray(dir, p + "_det_keep").ints();
    keep_equal = keep_equal && std::vector<int>(ref_keep.begin(), ref_keep.end()) == keep_ref_input;
    keep_own_equal = keep_own_equal && std::vector<int>(ref_keep.begin(), ref_keep.end()) == keep;
    kept += keep.size();
    // Pixel boxes and scores of the kept faces.
    const Image rgba = ReadArray(dir, p + "_rgba").image();
    const std::vector<float> ref_boxes = ReadArray(dir, p + "_det_boxes").floats();
    const std::vector<float> ref_scores = ReadArray(dir, p + "_det_face_scores").floats();
    if (ref_boxes.size() != keep.size() * 4) {
      boxes_rel = INFINITY;
      continue;
    }
    const float scale[4] = {static_cast<float>(rgba.width), static_cast<float>(rgba.height),
                            static_cast<float>(rgba.width), static_cast<float>(rgba.height)};
    for (size_t k = 0; k < keep.size(); ++k) {
      float box[4];
      for (int j = 0; j < 4; ++j) box[j] = decoded[4 * static_cast<size_t>(keep[k]) + j] * scale[j];
      boxes_rel = std::max(boxes_rel, RelDiff(box, ref_boxes.data() + 4 * k, 4));
      scores = std::max(scores, static_cast<double>(std::fabs(sc[2 * static_cast<size_t>(keep[k]) + 1] - ref_scores[k])));
    }
    // Detector input tensor from the RGBA photo.
    mobilefer::Tensor tensor;
    std::string err;
    mobilefer::MakeInputTensor(Rgb(rgba), d.input, config.gray_weights, &tensor, &err);
    const std::vector<float> ref_input = ReadArray(dir, p + "_det_input").floats();
    det_input = std::max(det_input, tensor.data.size() == ref_input.size()
                                        ? FloatDiff(tensor.data.data(), ref_input.data(), ref_input.size()) : INFINITY);
  }
  Report("ultraface.decode_boxes", decode, 1e-5, static_cast<size_t>(images), "normalised corners vs decode_boxes");
  Expect("ultraface.nms_indices", keep_equal, "SelectBoxes on Python's decoded boxes == select_boxes, kept=" + std::to_string(kept));
  Expect("ultraface.nms_indices_own_decode", keep_own_equal, "SelectBoxes on C++ decoded boxes == select_boxes");
  Report("ultraface.pixel_boxes", boxes_rel, 1e-5, kept, "relative (|d|/max(1,|x|))");
  Report("ultraface.face_scores", scores, 0, kept);
  Report("preprocess.detector_input", det_input, 1e-5, static_cast<size_t>(images), "vs Preset.preprocess");
}

void CheckCropsAndInputs(const std::string& dir, const golden::Config& cfg) {
  const int images = cfg.Int("images");
  const int classifiers = cfg.Int("classifiers");
  for (int k = 0; k < classifiers; ++k) {
    const mobilefer::EngineConfig config = golden::ReadEngineConfig(cfg, k);
    const mobilefer::ClassifierConfig& c = config.classifier;
    bool windows_equal = true;
    double crop_diff = 0, input_diff = 0, softmax_diff = 0;
    size_t faces = 0;
    for (int i = 0; i < images; ++i) {
      const std::string p = "img" + std::to_string(i);
      const std::string q = p + "_cls" + std::to_string(k);
      const Image rgb = Rgb(ReadArray(dir, p + "_rgba").image());
      const std::vector<float> boxes = ReadArray(dir, p + "_det_boxes").floats();
      const std::vector<int32_t> windows = ReadArray(dir, q + "_windows").ints();
      const std::vector<float> inputs = ReadArray(dir, q + "_inputs").floats();
      const Array logits = ReadArray(dir, q + "_logits");
      const std::vector<float> probs = ReadArray(dir, q + "_probs").floats();
      const size_t n = boxes.size() / 4;
      const size_t per_face = static_cast<size_t>(c.input.channels()) * c.input.width * c.input.height;
      if (windows.size() != 4 * n || inputs.size() != per_face * n) {
        windows_equal = false;
        continue;
      }
      for (size_t f = 0; f < n; ++f) {
        const double box[4] = {boxes[4 * f], boxes[4 * f + 1], boxes[4 * f + 2], boxes[4 * f + 3]};
        mobilefer::CropWindow w;
        mobilefer::ComputeCropWindow(box, c.crop, &w);
        windows_equal = windows_equal && w.left == windows[4 * f] && w.top == windows[4 * f + 1] &&
                        w.right == windows[4 * f + 2] && w.bottom == windows[4 * f + 3];
        const Image crop = mobilefer::CropImage(ImageView(rgb), w, c.crop.border);
        crop_diff = std::max(crop_diff, ImageDiff(crop, ReadArray(dir, q + "_face" + std::to_string(f) + "_crop")));
        mobilefer::Tensor tensor;
        std::string err;
        mobilefer::MakeInputTensor(crop, c.input, config.gray_weights, &tensor, &err);
        input_diff = std::max(input_diff, tensor.data.size() == per_face
                                              ? FloatDiff(tensor.data.data(), inputs.data() + per_face * f, per_face)
                                              : INFINITY);
        const std::vector<float> p_cpp = mobilefer::Softmax(logits.as<float>() + f * c.num_classes, c.num_classes);
        softmax_diff = std::max(softmax_diff, FloatDiff(p_cpp.data(), probs.data() + f * c.num_classes, c.num_classes));
      }
      faces += n;
    }
    const std::string name = "classifier" + std::to_string(k);
    const std::string desc = std::string(mobilefer::ColorOrderName(c.input.color)) + " " + std::to_string(c.input.width) +
                             "x" + std::to_string(c.input.height) + " " +
                             mobilefer::InterpolationName(c.input.interpolation) + " border=" +
                             mobilefer::BorderModeName(c.crop.border);
    Expect(name + ".crop_windows", windows_equal, "vs CropRule.window, faces=" + std::to_string(faces));
    Report(name + ".crop_pixels", crop_diff, 0, faces, "vs CropRule.crop");
    Report(name + ".input_tensor", input_diff, 1e-5, faces, "vs Preset.preprocess (" + desc + ")");
    Report(name + ".softmax", softmax_diff, 1e-5, faces, "vs classifier._softmax");
  }
}

void CheckSmoothing(const std::string& dir, const golden::Config& cfg, const mobilefer::EngineConfig& config) {
  const int frames = cfg.Int("smoothing.frames");
  mobilefer::SmoothingTracker tracker(config.smoothing);
  const int k = config.classifier.num_classes;
  bool ids_equal = true;
  double diff = 0;
  size_t n = 0;
  for (int f = 0; f < frames; ++f) {
    const std::string p = "smooth" + std::to_string(f);
    const std::vector<double> boxes = ReadArray(dir, p + "_boxes").doubles();
    const std::vector<float> probs = ReadArray(dir, p + "_probs").floats();
    const std::vector<int32_t> ids = ReadArray(dir, p + "_ids").ints();
    const std::vector<float> out_ref = ReadArray(dir, p + "_out").floats();
    std::vector<mobilefer::BoxD> b;
    std::vector<std::vector<float>> pr;
    for (size_t i = 0; i < boxes.size() / 4; ++i) {
      b.push_back({boxes[4 * i], boxes[4 * i + 1], boxes[4 * i + 2], boxes[4 * i + 3]});
      pr.emplace_back(probs.begin() + i * k, probs.begin() + (i + 1) * k);
    }
    const std::vector<mobilefer::TrackOutput> out = tracker.Update(cfg.Int(p + ".index"), b, pr);
    if (out.size() != ids.size()) {
      ids_equal = false;
      continue;
    }
    for (size_t i = 0; i < out.size(); ++i) {
      ids_equal = ids_equal && out[i].track_id == ids[i];
      diff = std::max(diff, FloatDiff(out[i].probs.data(), out_ref.data() + i * k, k));
    }
    n += out.size();
  }
  Expect("smoothing.track_ids", ids_equal, "vs SmoothingTracker over " + std::to_string(frames) + " frames");
  Report("smoothing.probs", diff, 1e-5, n, "vs SmoothingTracker");
}

// Full engine on the RGBA photos with replayed network outputs (detector input and every classifier
// input checked against Python), compared with the Python results.
void CheckEngine(const std::string& dir, const golden::Config& cfg, const mobilefer::EngineConfig& config) {
  const int images = cfg.Int("images");
  const int k = config.classifier.num_classes;
  double det_in = 0, cls_in = 0, boxes_rel = 0, scores = 0, probs_diff = 0, rotated_boxes = 0;
  bool structure_ok = true, rotated_ok = true;
  size_t faces = 0;
  for (int i = 0; i < images; ++i) {
    const std::string p = "img" + std::to_string(i);
    const Image rgba = ReadArray(dir, p + "_rgba").image();
    const Array scores_arr = ReadArray(dir, p + "_det_scores");
    const Array locs_arr = ReadArray(dir, p + "_det_locs");
    const std::vector<float> ref_boxes = ReadArray(dir, p + "_det_boxes").floats();
    const std::vector<float> ref_scores = ReadArray(dir, p + "_det_face_scores").floats();
    const std::vector<float> cls_inputs = ReadArray(dir, p + "_cls0_inputs").floats();
    const std::vector<float> logits = ReadArray(dir, p + "_cls0_logits").floats();
    const std::vector<float> ref_probs = ReadArray(dir, p + "_cls0_probs").floats();
    const size_t n = ref_scores.size();
    const size_t per_face = n ? cls_inputs.size() / n : 0;

    for (int rotated = 0; rotated < 2; ++rotated) {
      golden::ReplayNetwork::Step det_step;
      det_step.outputs = {mobilefer::Tensor{{1, scores_arr.dim(0), 2}, scores_arr.floats()},
                          mobilefer::Tensor{{1, locs_arr.dim(0), 4}, locs_arr.floats()}};
      det_step.expected_input = ReadArray(dir, p + "_det_input").floats();
      golden::ReplayNetwork det({config.detector.scores_output, config.detector.boxes_output}, {det_step}, "detector",
                                false);
      std::vector<golden::ReplayNetwork::Step> cls_steps(n);
      for (size_t f = 0; f < n; ++f) {
        cls_steps[f].outputs = {mobilefer::Tensor{{1, k}, std::vector<float>(logits.begin() + f * k, logits.begin() + (f + 1) * k)}};
        cls_steps[f].expected_input.assign(cls_inputs.begin() + per_face * f, cls_inputs.begin() + per_face * (f + 1));
      }
      golden::ReplayNetwork cls({config.classifier.logits_output}, cls_steps, "classifier", false);
      std::string err;
      std::unique_ptr<mobilefer::Engine> engine = mobilefer::CreateCoreEngine(
          config, std::unique_ptr<mobilefer::Network>(new golden::NetworkRef(&det)),
          std::unique_ptr<mobilefer::Network>(new golden::NetworkRef(&cls)), &err);
      if (!engine) {
        std::printf("engine creation failed: %s\n", err.c_str());
        structure_ok = false;
        break;
      }
      // The frame as a camera would deliver it: padded rows; the rotated variant is stored turned
      // 90 degrees counter-clockwise and says rotation 90.
      Image stored = rgba;
      if (rotated) mobilefer::Orient(ImageView(rgba), 270, false, &stored, &err);
      int stride = 0;
      const Image padded = PadRows(stored, 32, &stride);
      mobilefer::Frame frame;
      frame.format = mobilefer::FrameFormat::kRgba;
      frame.data = padded.data.data();
      frame.width = stored.width;
      frame.height = stored.height;
      frame.row_stride = stride;
      frame.rotation_cw = rotated ? 90 : 0;
      mobilefer::FrameResult result;
      if (!engine->Process(frame, &result, &err)) {
        std::printf("engine failed on %s: %s\n", p.c_str(), err.c_str());
        structure_ok = false;
        continue;
      }
      bool ok = result.faces.size() == n && result.width == rgba.width && result.height == rgba.height &&
                det.calls() == 1 && cls.calls() == n;
      double local_boxes = 0;
      for (size_t f = 0; ok && f < n; ++f) {
        const mobilefer::FaceResult& face = result.faces[f];
        local_boxes = std::max(local_boxes, RelDiff(face.box, ref_boxes.data() + 4 * f, 4));
        scores = std::max(scores, static_cast<double>(std::fabs(face.score - ref_scores[f])));
        probs_diff = std::max(probs_diff, FloatDiff(face.probs.data(), ref_probs.data() + f * k, k));
        const std::vector<float> expected(ref_probs.begin() + f * k, ref_probs.begin() + (f + 1) * k);
        ok = ok && face.label == mobilefer::ArgMax(expected) && face.track_id == static_cast<int>(f);
      }
      det_in = std::max(det_in, det.max_input_diff());
      cls_in = std::max(cls_in, cls.max_input_diff());
      if (rotated) {
        rotated_ok = rotated_ok && ok;
        rotated_boxes = std::max(rotated_boxes, local_boxes);
      } else {
        structure_ok = structure_ok && ok;
        boxes_rel = std::max(boxes_rel, local_boxes);
        faces += n;
      }
    }
  }
  Expect("engine.faces_labels_tracks", structure_ok, "face count, frame size, labels, track ids, network calls");
  Expect("engine.rotated_frame", rotated_ok, "same photo stored rotated, rotation_cw=90");
  Report("engine.detector_input", det_in, 1e-5, static_cast<size_t>(images));
  Report("engine.classifier_inputs", cls_in, 1e-5, faces);
  Report("engine.boxes", std::max(boxes_rel, rotated_boxes), 1e-5, faces, "relative");
  Report("engine.scores", scores, 0, faces);
  Report("engine.probs", probs_diff, 1e-5, faces);
}

void CheckValidation(const mobilefer::EngineConfig& config) {
  Expect("config.valid", mobilefer::ValidateConfig(config).empty(), mobilefer::ValidateConfig(config));
  mobilefer::EngineConfig bad = config;
  bad.classifier.input.interpolation = mobilefer::Interpolation::kArea;
  Expect("config.rejects_area", !mobilefer::ValidateConfig(bad).empty());
  bad = config;
  bad.detector.input.mean.pop_back();
  Expect("config.rejects_mean_size", !mobilefer::ValidateConfig(bad).empty());
  bad = config;
  bad.gray_weights.g += 1;
  Expect("config.rejects_gray_weights", !mobilefer::ValidateConfig(bad).empty());
  bad = config;
  bad.detector.priors.num_priors += 1;
  std::string err;
  auto engine = mobilefer::CreateCoreEngine(bad, nullptr, nullptr, &err);
  Expect("config.rejects_missing_networks", engine == nullptr && !err.empty());
  golden::ReplayNetwork a({"x"}, {}, "a", false), b({"y"}, {}, "b", false);
  engine = mobilefer::CreateCoreEngine(bad, std::unique_ptr<mobilefer::Network>(new golden::NetworkRef(&a)),
                                       std::unique_ptr<mobilefer::Network>(new golden::NetworkRef(&b)), &err);
  Expect("config.rejects_num_priors", engine == nullptr && err.find("num_priors") != std::string::npos, err);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s GOLDEN_DIR [OUT_DIR]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  try {
    const golden::Config cfg(dir);
    const mobilefer::EngineConfig config = golden::ReadEngineConfig(cfg, 0);
    CheckValidation(config);
    CheckConversions(dir, cfg, config.gray_weights);
    CheckOrientation(dir);
    CheckResize(dir, cfg);
    CheckDetector(dir, cfg, config);
    CheckCropsAndInputs(dir, cfg);
    CheckSmoothing(dir, cfg, config);
    CheckEngine(dir, cfg, config);
    if (argc >= 3) {
      std::ofstream out(std::string(argv[2]) + "/describe_cls0.txt");
      out << mobilefer::DescribeConfig(config);
    }
  } catch (const std::exception& e) {
    std::printf("ERROR %s\n", e.what());
    ++g_failed;
  }
  std::printf("core: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
