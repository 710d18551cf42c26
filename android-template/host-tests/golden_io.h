// Reading the golden vectors written by mobilefer.export.golden (config.txt + MFGV .bin arrays), and
// turning config.txt into a mobilefer::EngineConfig. Test-only; header-only.
#ifndef MOBILEFER_HOST_TESTS_GOLDEN_IO_H_
#define MOBILEFER_HOST_TESTS_GOLDEN_IO_H_

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/image.h"

namespace golden {

enum DType { kFloat32 = 1, kInt32 = 2, kUint8 = 3, kFloat64 = 4 };

struct Array {
  int dtype = 0;
  std::vector<int> dims;
  std::vector<uint8_t> bytes;

  size_t count() const {
    size_t n = 1;
    for (int d : dims) n *= static_cast<size_t>(d);
    return n;
  }
  int dim(size_t i) const { return i < dims.size() ? dims[i] : 1; }
  template <typename T>
  const T* as() const { return reinterpret_cast<const T*>(bytes.data()); }
  std::vector<float> floats() const {
    if (dtype != kFloat32) throw std::runtime_error("array is not float32");
    return std::vector<float>(as<float>(), as<float>() + count());
  }
  std::vector<double> doubles() const {
    if (dtype != kFloat64) throw std::runtime_error("array is not float64");
    return std::vector<double>(as<double>(), as<double>() + count());
  }
  std::vector<int32_t> ints() const {
    if (dtype != kInt32) throw std::runtime_error("array is not int32");
    return std::vector<int32_t>(as<int32_t>(), as<int32_t>() + count());
  }
  // uint8 arrays of shape (H, W) or (H, W, C) as an image.
  mobilefer::Image image() const {
    if (dtype != kUint8 || dims.size() < 2 || dims.size() > 3) throw std::runtime_error("array is not an image");
    mobilefer::Image out(dims[1], dims[0], dims.size() == 3 ? dims[2] : 1);
    std::memcpy(out.data.data(), bytes.data(), bytes.size());
    return out;
  }
};

inline size_t DTypeSize(int dtype) {
  switch (dtype) {
    case kFloat32: return 4;
    case kInt32: return 4;
    case kUint8: return 1;
    case kFloat64: return 8;
    default: throw std::runtime_error("unknown dtype code " + std::to_string(dtype));
  }
}

inline uint32_t ReadU32(std::istream& in) {
  unsigned char b[4];
  in.read(reinterpret_cast<char*>(b), 4);
  if (!in) throw std::runtime_error("truncated golden array header");
  return static_cast<uint32_t>(b[0]) | (static_cast<uint32_t>(b[1]) << 8) | (static_cast<uint32_t>(b[2]) << 16) |
         (static_cast<uint32_t>(b[3]) << 24);
}

// Reads <dir>/<name>.bin (the host is little-endian, as the files).
inline Array ReadArray(const std::string& dir, const std::string& name) {
  const std::string path = dir + "/" + name + ".bin";
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  char magic[4];
  in.read(magic, 4);
  if (!in || std::memcmp(magic, "MFGV", 4) != 0) throw std::runtime_error(path + ": bad magic");
  const uint32_t version = ReadU32(in);
  if (version != 1) throw std::runtime_error(path + ": unsupported version");
  Array a;
  a.dtype = static_cast<int>(ReadU32(in));
  const uint32_t ndim = ReadU32(in);
  for (uint32_t i = 0; i < ndim; ++i) a.dims.push_back(static_cast<int>(ReadU32(in)));
  a.bytes.resize(a.count() * DTypeSize(a.dtype));
  if (!a.bytes.empty()) in.read(reinterpret_cast<char*>(a.bytes.data()), static_cast<std::streamsize>(a.bytes.size()));
  if (!in) throw std::runtime_error(path + ": truncated data");
  return a;
}

// config.txt: key -> words.
class Config {
 public:
  explicit Config(const std::string& dir) {
    const std::string path = dir + "/config.txt";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream words(line);
      std::string key, word;
      if (!(words >> key)) continue;
      std::vector<std::string> values;
      while (words >> word) values.push_back(word);
      values_[key] = values;
    }
  }
  bool Has(const std::string& key) const { return values_.count(key) > 0; }
  const std::vector<std::string>& Words(const std::string& key) const {
    auto it = values_.find(key);
    if (it == values_.end()) throw std::runtime_error("config.txt has no key " + key);
    return it->second;
  }
  std::string Str(const std::string& key) const { return First(key); }
  int Int(const std::string& key, size_t i = 0) const { return std::stoi(Word(key, i)); }
  double Double(const std::string& key, size_t i = 0) const { return std::strtod(Word(key, i).c_str(), nullptr); }
  bool Bool(const std::string& key) const { return Int(key) != 0; }
  std::vector<double> Doubles(const std::string& key) const {
    std::vector<double> out;
    for (const std::string& w : Words(key)) out.push_back(std::strtod(w.c_str(), nullptr));
    return out;
  }
  std::vector<int> Ints(const std::string& key) const {
    std::vector<int> out;
    for (const std::string& w : Words(key)) out.push_back(std::stoi(w));
    return out;
  }
  // "10,16,24 32,48" -> {{10,16,24},{32,48}}
  std::vector<std::vector<int>> IntLists(const std::string& key) const {
    std::vector<std::vector<int>> out;
    for (const std::string& w : Words(key)) {
      std::vector<int> row;
      std::istringstream parts(w);
      std::string part;
      while (std::getline(parts, part, ',')) row.push_back(std::stoi(part));
      out.push_back(row);
    }
    return out;
  }

 private:
  std::string First(const std::string& key) const { return Word(key, 0); }
  std::string Word(const std::string& key, size_t i) const {
    const std::vector<std::string>& words = Words(key);
    if (i >= words.size()) throw std::runtime_error("config.txt key " + key + " has too few values");
    return words[i];
  }
  std::map<std::string, std::vector<std::string>> values_;
};

inline mobilefer::InputSpec ReadInput(const Config& c, const std::string& prefix) {
  mobilefer::InputSpec in;
  in.name = c.Str(prefix + ".input.name");
  in.width = c.Int(prefix + ".input.width");
  in.height = c.Int(prefix + ".input.height");
  if (!mobilefer::ParseColorOrder(c.Str(prefix + ".input.color"), &in.color)) throw std::runtime_error("bad color");
  in.mean = c.Doubles(prefix + ".input.mean");
  in.std = c.Doubles(prefix + ".input.std");
  if (!mobilefer::ParseInterpolation(c.Str(prefix + ".input.interpolation"), &in.interpolation)) {
    throw std::runtime_error("bad interpolation");
  }
  return in;
}

// The engine config of config.txt with classifier preset `k`.
inline mobilefer::EngineConfig ReadEngineConfig(const Config& c, int k) {
  mobilefer::EngineConfig e;
  e.gray_weights.r = c.Int("gray_weights", 0);
  e.gray_weights.g = c.Int("gray_weights", 1);
  e.gray_weights.b = c.Int("gray_weights", 2);
  e.gray_weights.shift = c.Int("gray_weights", 3);
  mobilefer::DetectorConfig& d = e.detector;
  d.name = c.Str("detector.name");
  d.input = ReadInput(c, "detector");
  d.scores_output = c.Str("detector.outputs.scores");
  d.boxes_output = c.Str("detector.outputs.boxes");
  d.priors.strides = c.Ints("detector.priors.strides");
  d.priors.min_boxes = c.IntLists("detector.priors.min_boxes");
  d.priors.center_variance = c.Double("detector.priors.center_variance");
  d.priors.size_variance = c.Double("detector.priors.size_variance");
  d.priors.clamp = c.Bool("detector.priors.clamp");
  d.priors.num_priors = c.Int("detector.priors.num_priors");
  d.postprocess.score_threshold = c.Double("detector.postprocess.score_threshold");
  d.postprocess.iou_threshold = c.Double("detector.postprocess.iou_threshold");
  d.postprocess.candidate_size = c.Int("detector.postprocess.candidate_size");
  d.postprocess.top_k = c.Int("detector.postprocess.top_k");
  const std::string p = "classifier" + std::to_string(k);
  mobilefer::ClassifierConfig& cls = e.classifier;
  cls.name = c.Str(p + ".name");
  cls.input = ReadInput(c, p);
  cls.logits_output = c.Str(p + ".outputs.logits");
  cls.num_classes = static_cast<int>(c.Words(p + ".labels").size());
  cls.crop.margin = c.Double(p + ".crop.margin");
  cls.crop.square = c.Bool(p + ".crop.square");
  cls.crop.shift_y = c.Double(p + ".crop.shift_y");
  if (!mobilefer::ParseBorderMode(c.Str(p + ".crop.border"), &cls.crop.border)) throw std::runtime_error("bad border");
  cls.tta = c.Bool(p + ".tta");
  e.smoothing.enabled = c.Bool("smoothing.enabled");
  e.smoothing.alpha = c.Double("smoothing.alpha");
  e.smoothing.match_iou = c.Double("smoothing.match_iou");
  e.smoothing.max_age = c.Int("smoothing.max_age");
  return e;
}

}  // namespace golden

#endif  // MOBILEFER_HOST_TESTS_GOLDEN_IO_H_
