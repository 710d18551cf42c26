// mobilefer.json (bundle manifest, schema_version 1) -> mobilefer::EngineConfig for host programs.
// The app does this mapping in Kotlin (BundleLoader.kt, with org.json); this tiny JSON reader is
// host-only code (run_engine_main, manifest_dump) and is not part of the app's native library.
#ifndef MOBILEFER_HOST_TESTS_MANIFEST_H_
#define MOBILEFER_HOST_TESTS_MANIFEST_H_

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/config.h"

namespace manifest {

struct Value {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Value> array;
  std::map<std::string, Value> object;

  const Value& operator[](const std::string& key) const {
    if (kind != kObject) throw std::runtime_error("manifest: '" + key + "' looked up in a non-object");
    auto it = object.find(key);
    if (it == object.end()) throw std::runtime_error("manifest: missing key '" + key + "'");
    return it->second;
  }
  bool Has(const std::string& key) const { return kind == kObject && object.count(key) > 0; }
  double Number() const {
    if (kind != kNumber) throw std::runtime_error("manifest: expected a number");
    return number;
  }
  int Int() const { return static_cast<int>(Number()); }
  bool Bool() const {
    if (kind != kBool) throw std::runtime_error("manifest: expected true/false");
    return boolean;
  }
  const std::string& Str() const {
    if (kind != kString) throw std::runtime_error("manifest: expected a string");
    return string;
  }
  const std::vector<Value>& Array() const {
    if (kind != kArray) throw std::runtime_error("manifest: expected an array");
    return array;
  }
};

class Parser {
 public:
  explicit Parser(const std::string& text) : s_(text) {}
  Value Parse() {
    Value v = ParseValue();
    Skip();
    if (i_ != s_.size()) Fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void Fail(const std::string& what) {
    throw std::runtime_error("manifest JSON: " + what + " at offset " + std::to_string(i_));
  }
  void Skip() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool Eat(char c) {
    Skip();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void Expect(char c) {
    if (!Eat(c)) Fail(std::string("expected '") + c + "'");
  }
  bool Word(const char* w) {
    const std::string word(w);
    if (s_.compare(i_, word.size(), word) == 0) {
      i_ += word.size();
      return true;
    }
    return false;
  }
  std::string ParseString() {
    Expect('"');
    std::string out;
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (c == '\\') {
        if (i_ >= s_.size()) Fail("bad escape");
        const char e = s_[i_++];
        switch (e) {
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          case 'r': out += '\r'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'u': {
            if (i_ + 4 > s_.size()) Fail("bad \\u escape");
            const unsigned code = static_cast<unsigned>(std::strtoul(s_.substr(i_, 4).c_str(), nullptr, 16));
            i_ += 4;
            if (code < 0x80) {
              out += static_cast<char>(code);
            } else if (code < 0x800) {
              out += static_cast<char>(0xC0 | (code >> 6));
              out += static_cast<char>(0x80 | (code & 0x3F));
            } else {
              out += static_cast<char>(0xE0 | (code >> 12));
              out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
              out += static_cast<char>(0x80 | (code & 0x3F));
            }
            break;
          }
          default: out += e; break;
        }
      } else {
        out += c;
      }
    }
    if (i_ >= s_.size()) Fail("unterminated string");
    ++i_;
    return out;
  }
  Value ParseValue() {
    Skip();
    if (i_ >= s_.size()) Fail("unexpected end");
    Value v;
    const char c = s_[i_];
    if (c == '{') {
      ++i_;
      v.kind = Value::kObject;
      if (Eat('}')) return v;
      do {
        Skip();
        const std::string key = ParseString();
        Expect(':');
        v.object[key] = ParseValue();
      } while (Eat(','));
      Expect('}');
    } else if (c == '[') {
      ++i_;
      v.kind = Value::kArray;
      if (Eat(']')) return v;
      do {
        v.array.push_back(ParseValue());
      } while (Eat(','));
      Expect(']');
    } else if (c == '"') {
      v.kind = Value::kString;
      v.string = ParseString();
    } else if (Word("true")) {
      v.kind = Value::kBool;
      v.boolean = true;
    } else if (Word("false")) {
      v.kind = Value::kBool;
    } else if (Word("null")) {
      v.kind = Value::kNull;
    } else {
      const char* begin = s_.c_str() + i_;
      char* end = nullptr;
      v.number = std::strtod(begin, &end);
      if (end == begin) Fail("unexpected character");
      v.kind = Value::kNumber;
      i_ += static_cast<size_t>(end - begin);
    }
    return v;
  }

  const std::string& s_;
  size_t i_ = 0;
};

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

inline Value Load(const std::string& path) {
  const std::string text = ReadFile(path);
  return Parser(text).Parse();
}

inline std::vector<double> Doubles(const Value& v) {
  std::vector<double> out;
  for (const Value& x : v.Array()) out.push_back(x.Number());
  return out;
}

inline mobilefer::InputSpec Input(const Value& in) {
  mobilefer::InputSpec spec;
  spec.name = in["name"].Str();
  spec.width = in["width"].Int();
  spec.height = in["height"].Int();
  if (!mobilefer::ParseColorOrder(in["color"].Str(), &spec.color)) throw std::runtime_error("unknown color");
  spec.mean = Doubles(in["mean"]);
  spec.std = Doubles(in["std"]);
  if (!mobilefer::ParseInterpolation(in["interpolation"].Str(), &spec.interpolation)) {
    throw std::runtime_error("unknown interpolation");
  }
  return spec;
}

// The same mapping as BundleLoader.kt. Throws std::runtime_error naming what is missing.
inline mobilefer::EngineConfig ToEngineConfig(const Value& m) {
  if (m["schema"].Str() != "mobilefer-bundle" || m["schema_version"].Int() != 1) {
    throw std::runtime_error("not a mobilefer bundle manifest of schema_version 1");
  }
  mobilefer::EngineConfig e;
  const Value& gray = m["gray_weights"];
  e.gray_weights = {gray["r"].Int(), gray["g"].Int(), gray["b"].Int(), gray["shift"].Int()};
  const Value& d = m["detector"];
  e.detector.name = d["name"].Str();
  e.detector.input = Input(d["input"]);
  e.detector.scores_output = d["outputs"]["scores"].Str();
  e.detector.boxes_output = d["outputs"]["boxes"].Str();
  const Value& p = d["priors"];
  for (const Value& s : p["strides"].Array()) e.detector.priors.strides.push_back(s.Int());
  for (const Value& list : p["min_boxes"].Array()) {
    std::vector<int> sides;
    for (const Value& s : list.Array()) sides.push_back(s.Int());
    e.detector.priors.min_boxes.push_back(sides);
  }
  e.detector.priors.center_variance = p["center_variance"].Number();
  e.detector.priors.size_variance = p["size_variance"].Number();
  e.detector.priors.clamp = p["clamp"].Bool();
  e.detector.priors.num_priors = p["num_priors"].Int();
  const Value& post = d["postprocess"];
  e.detector.postprocess.score_threshold = post["score_threshold"].Number();
  e.detector.postprocess.iou_threshold = post["iou_threshold"].Number();
  e.detector.postprocess.candidate_size = post["candidate_size"].Int();
  e.detector.postprocess.top_k = post["top_k"].kind == Value::kNull ? 0 : post["top_k"].Int();
  const Value& c = m["classifier"];
  e.classifier.name = c["name"].Str();
  e.classifier.input = Input(c["input"]);
  e.classifier.logits_output = c["outputs"]["logits"].Str();
  e.classifier.num_classes = static_cast<int>(c["labels"].Array().size());
  e.classifier.crop.margin = c["crop"]["margin"].Number();
  e.classifier.crop.square = c["crop"]["square"].Bool();
  e.classifier.crop.shift_y = c["crop"]["shift_y"].Number();
  if (!mobilefer::ParseBorderMode(c["crop"]["border"].Str(), &e.classifier.crop.border)) {
    throw std::runtime_error("unknown crop border");
  }
  e.classifier.tta = c["tta"].Bool();
  const Value& s = m["smoothing"];
  e.smoothing.enabled = true;
  e.smoothing.alpha = s["alpha"].Number();
  e.smoothing.match_iou = s["match_iou"].Number();
  e.smoothing.max_age = s["max_age"].Int();
  return e;
}

inline std::vector<std::string> Labels(const Value& m) {
  std::vector<std::string> out;
  for (const Value& v : m["classifier"]["labels"].Array()) out.push_back(v.Str());
  return out;
}

}  // namespace manifest

#endif  // MOBILEFER_HOST_TESTS_MANIFEST_H_
