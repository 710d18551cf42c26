// Runs the whole native engine with the TNN backend on one image and a bundle folder, and prints the
// results as JSON. Host counterpart of the app (needs a host build of TNN; see CMakeLists.txt,
// MOBILEFER_WITH_TNN=ON).
//
//   run_engine_main BUNDLE_DIR IMAGE.ppm [--gpu] [--threads N] [--precision high|normal|low] [--frames N]
//
// IMAGE is a binary PPM (P6, RGB) or PGM (P5), e.g. written by
//   python -c "import cv2; cv2.imwrite('photo.ppm', cv2.imread('photo.jpg'))"
// Compare with: mobilefer predict photo.jpg (same bundle classifier and detector).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/engine.h"
#include "engine_factory.h"
#include "manifest.h"

namespace {

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string Num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

// Reads a binary PPM/PGM into RGBA.
bool ReadPnm(const std::string& path, std::vector<uint8_t>* rgba, int* width, int* height, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot open " + path;
    return false;
  }
  std::string magic;
  in >> magic;
  auto next_int = [&in]() {
    int v = -1;
    while (in >> std::ws && in.peek() == '#') {
      std::string comment;
      std::getline(in, comment);
    }
    in >> v;
    return v;
  };
  const int w = next_int(), h = next_int(), maxval = next_int();
  in.get();  // the single whitespace before the pixels
  if ((magic != "P6" && magic != "P5") || w < 1 || h < 1 || maxval != 255) {
    *error = path + ": expected a binary 8-bit PPM (P6) or PGM (P5)";
    return false;
  }
  const int cn = magic == "P6" ? 3 : 1;
  std::vector<uint8_t> pixels(static_cast<size_t>(w) * h * cn);
  in.read(reinterpret_cast<char*>(pixels.data()), static_cast<std::streamsize>(pixels.size()));
  if (!in) {
    *error = path + ": truncated pixel data";
    return false;
  }
  rgba->resize(static_cast<size_t>(w) * h * 4);
  for (size_t i = 0; i < static_cast<size_t>(w) * h; ++i) {
    for (int c = 0; c < 3; ++c) (*rgba)[4 * i + c] = pixels[i * cn + (cn == 3 ? c : 0)];
    (*rgba)[4 * i + 3] = 255;
  }
  *width = w;
  *height = h;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: %s BUNDLE_DIR IMAGE.ppm [--gpu] [--threads N] [--precision high|normal|low] [--frames N]\n",
                 argv[0]);
    return 2;
  }
  const std::string bundle = argv[1];
  const std::string image = argv[2];
  mobilefer::RuntimeOptions options;
  int frames = 1;
  for (int i = 3; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--gpu") {
      options.use_gpu = true;
    } else if (arg == "--threads" && i + 1 < argc) {
      options.num_threads = std::atoi(argv[++i]);
    } else if (arg == "--frames" && i + 1 < argc) {
      frames = std::max(1, std::atoi(argv[++i]));
    } else if (arg == "--precision" && i + 1 < argc) {
      const std::string p = argv[++i];
      options.precision = p == "normal" ? mobilefer::Precision::kNormal
                          : p == "low"  ? mobilefer::Precision::kLow
                                        : mobilefer::Precision::kHigh;
    } else {
      std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
      return 2;
    }
  }
  try {
    const manifest::Value m = manifest::Load(bundle + "/mobilefer.json");
    const mobilefer::EngineConfig config = manifest::ToEngineConfig(m);
    const std::vector<std::string> labels = manifest::Labels(m);
    mobilefer::ModelData detector{manifest::ReadFile(bundle + "/" + m["detector"]["files"]["tnnproto"].Str()),
                                  manifest::ReadFile(bundle + "/" + m["detector"]["files"]["tnnmodel"].Str())};
    mobilefer::ModelData classifier{manifest::ReadFile(bundle + "/" + m["classifier"]["files"]["tnnproto"].Str()),
                                    manifest::ReadFile(bundle + "/" + m["classifier"]["files"]["tnnmodel"].Str())};
    std::string message;
    std::unique_ptr<mobilefer::Engine> engine = mobilefer::CreateEngine(config, detector, classifier, options, &message);
    if (!engine) {
      std::fprintf(stderr, "cannot create the engine: %s\n", message.c_str());
      return 1;
    }
    std::vector<uint8_t> rgba;
    int width = 0, height = 0;
    std::string error;
    if (!ReadPnm(image, &rgba, &width, &height, &error)) {
      std::fprintf(stderr, "%s\n", error.c_str());
      return 1;
    }
    mobilefer::Frame frame;
    frame.format = mobilefer::FrameFormat::kRgba;
    frame.data = rgba.data();
    frame.width = width;
    frame.height = height;
    frame.row_stride = 4 * width;
    mobilefer::FrameResult result;
    for (int f = 0; f < frames; ++f) {
      if (!engine->Process(frame, &result, &error)) {
        std::fprintf(stderr, "processing failed: %s\n", error.c_str());
        return 1;
      }
    }
    std::ostringstream out;
    out << "{\"image\": " << JsonString(image) << ", \"width\": " << result.width << ", \"height\": " << result.height
        << ",\n \"warnings\": " << JsonString(message) << ",\n \"faces\": [";
    for (size_t k = 0; k < result.faces.size(); ++k) {
      const mobilefer::FaceResult& face = result.faces[k];
      out << (k ? ",\n  " : "\n  ") << "{\"box\": [" << Num(face.box[0]) << ", " << Num(face.box[1]) << ", "
          << Num(face.box[2]) << ", " << Num(face.box[3]) << "], \"score\": " << Num(face.score)
          << ", \"label\": " << JsonString(face.label >= 0 && face.label < static_cast<int>(labels.size())
                                               ? labels[face.label] : std::string("?"))
          << ", \"track_id\": " << face.track_id << ", \"probs\": {";
      for (size_t c = 0; c < face.probs.size() && c < labels.size(); ++c) {
        out << (c ? ", " : "") << JsonString(labels[c]) << ": " << Num(face.probs[c]);
      }
      out << "}}";
    }
    const mobilefer::StageTimes& t = result.times;
    out << "],\n \"times_ms\": {\"convert\": " << Num(t.convert_ms) << ", \"detector_pre\": " << Num(t.detector_pre_ms)
        << ", \"detector_infer\": " << Num(t.detector_infer_ms) << ", \"detector_post\": " << Num(t.detector_post_ms)
        << ", \"classifier_pre\": " << Num(t.classifier_pre_ms) << ", \"classifier_infer\": "
        << Num(t.classifier_infer_ms) << ", \"smoothing\": " << Num(t.smoothing_ms) << ", \"total\": "
        << Num(t.total_ms) << "},\n \"engine\": " << JsonString(engine->Describe()) << "}\n";
    std::cout << out.str();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
