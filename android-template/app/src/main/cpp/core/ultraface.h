// UltraFace post-processing: priors, box decoding and hard NMS, with the arithmetic of
// mobilefer.detect.ultraface (generate_priors / decode_boxes / select_boxes, torchvision's CPU nms).
//
// Plain C++17, no TNN or Android headers.
#ifndef MOBILEFER_CORE_ULTRAFACE_H_
#define MOBILEFER_CORE_ULTRAFACE_H_

#include <string>
#include <vector>

#include "core/config.h"

namespace mobilefer {

// Centre-form priors (cx, cy, w, h), normalised to the input size, float32, 4 values per prior.
// Head k has a (ceil(W / stride_k), ceil(H / stride_k)) feature map; order: head, row j, column i,
// min_box; cx = (i + 0.5) / fw, cy = (j + 0.5) / fh, w = min_box / W, h = min_box / H (computed in
// double, rounded to float, then clamped to [0, 1] when spec.clamp).
std::vector<float> GeneratePriors(int input_width, int input_height, const PriorSpec& spec);

// Corner-form boxes (x1, y1, x2, y2), normalised, from raw regressions (4 per prior):
// centre = loc * center_variance * prior_wh + prior_xy; size = exp(loc * size_variance) * prior_wh.
// Float arithmetic in the order torch evaluates it.
void DecodeBoxes(const float* locations, const std::vector<float>& priors, double center_variance,
                 double size_variance, float* boxes_out);

// Indices of the boxes kept by mobilefer's select_boxes, best first: face score > threshold
// (compared in float32, as torch does), the candidate_size best (stable order), hard NMS dropping
// boxes whose IoU with a kept box is > iou_threshold (IoU in float, compared in double), top_k.
// `face_scores[i * score_stride]` is the face score of prior i.
std::vector<int> SelectBoxes(const float* face_scores, int score_stride, const float* boxes, int count,
                             const PostprocessSpec& spec);

}  // namespace mobilefer

#endif  // MOBILEFER_CORE_ULTRAFACE_H_
