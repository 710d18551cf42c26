#include "core/ultraface.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace mobilefer {

std::vector<float> GeneratePriors(int input_width, int input_height, const PriorSpec& spec) {
  std::vector<float> priors;
  for (size_t k = 0; k < spec.strides.size() && k < spec.min_boxes.size(); ++k) {
    const int stride = spec.strides[k];
    const int fw = (input_width + stride - 1) / stride;
    const int fh = (input_height + stride - 1) / stride;
    for (int j = 0; j < fh; ++j) {
      for (int i = 0; i < fw; ++i) {
        for (int side : spec.min_boxes[k]) {
          const float values[4] = {
              static_cast<float>((i + 0.5) / fw),
              static_cast<float>((j + 0.5) / fh),
              static_cast<float>(static_cast<double>(side) / input_width),
              static_cast<float>(static_cast<double>(side) / input_height),
          };
          for (float v : values) priors.push_back(spec.clamp ? std::min(std::max(v, 0.f), 1.f) : v);
        }
      }
    }
  }
  return priors;
}

void DecodeBoxes(const float* locations, const std::vector<float>& priors, double center_variance,
                 double size_variance, float* boxes_out) {
  const float cv = static_cast<float>(center_variance);
  const float sv = static_cast<float>(size_variance);
  const size_t count = priors.size() / 4;
  for (size_t a = 0; a < count; ++a) {
    const float* l = locations + 4 * a;
    const float* p = priors.data() + 4 * a;
    float cx = l[0] * cv;
    cx = cx * p[2];
    cx = cx + p[0];
    float cy = l[1] * cv;
    cy = cy * p[3];
    cy = cy + p[1];
    const float w = std::exp(l[2] * sv) * p[2];
    const float h = std::exp(l[3] * sv) * p[3];
    const float hw = w / 2.f;
    const float hh = h / 2.f;
    float* o = boxes_out + 4 * a;
    o[0] = cx - hw;
    o[1] = cy - hh;
    o[2] = cx + hw;
    o[3] = cy + hh;
  }
}

std::vector<int> SelectBoxes(const float* face_scores, int score_stride, const float* boxes, int count,
                             const PostprocessSpec& spec) {
  const float threshold = static_cast<float>(spec.score_threshold);
  std::vector<int> candidates;
  for (int i = 0; i < count; ++i) {
    if (face_scores[static_cast<size_t>(i) * score_stride] > threshold) candidates.push_back(i);
  }
  auto score = [&](int i) { return face_scores[static_cast<size_t>(i) * score_stride]; };
  std::stable_sort(candidates.begin(), candidates.end(), [&](int a, int b) { return score(a) > score(b); });
  if (static_cast<int>(candidates.size()) > spec.candidate_size) candidates.resize(spec.candidate_size);

  const size_t n = candidates.size();
  std::vector<float> area(n);
  for (size_t k = 0; k < n; ++k) {
    const float* b = boxes + 4 * static_cast<size_t>(candidates[k]);
    area[k] = (b[2] - b[0]) * (b[3] - b[1]);
  }
  std::vector<char> suppressed(n, 0);
  std::vector<int> keep;
  for (size_t i = 0; i < n; ++i) {
    if (suppressed[i]) continue;
    keep.push_back(candidates[i]);
    const float* bi = boxes + 4 * static_cast<size_t>(candidates[i]);
    for (size_t j = i + 1; j < n; ++j) {
      if (suppressed[j]) continue;
      const float* bj = boxes + 4 * static_cast<size_t>(candidates[j]);
      const float xx1 = std::max(bi[0], bj[0]);
      const float yy1 = std::max(bi[1], bj[1]);
      const float xx2 = std::min(bi[2], bj[2]);
      const float yy2 = std::min(bi[3], bj[3]);
      const float w = std::max(0.f, xx2 - xx1);
      const float h = std::max(0.f, yy2 - yy1);
      const float inter = w * h;
      const float ovr = inter / (area[i] + area[j] - inter);
      if (static_cast<double>(ovr) > spec.iou_threshold) suppressed[j] = 1;
    }
  }
  if (spec.top_k > 0 && static_cast<int>(keep.size()) > spec.top_k) keep.resize(spec.top_k);
  return keep;
}

}  // namespace mobilefer
