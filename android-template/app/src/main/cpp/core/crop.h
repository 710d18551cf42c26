// Face crops with mobilefer.preset.CropRule semantics (see its docstring).
//
// Plain C++17, no TNN or Android headers.
#ifndef MOBILEFER_CORE_CROP_H_
#define MOBILEFER_CORE_CROP_H_

#include "core/config.h"
#include "core/image.h"

namespace mobilefer {

// Integer crop window; right and bottom are exclusive.
struct CropWindow {
  int left = 0;
  int top = 0;
  int right = 0;
  int bottom = 0;
  int width() const { return right - left; }
  int height() const { return bottom - top; }
};

// CropRule.window: w = x2 - x1, h = y2 - y1, cx = (x1 + x2) / 2, cy = (y1 + y2) / 2 + shift_y * h;
// square: w = h = max(w, h); side = size * (1 + 2 * margin); left = floor(cx - side_w / 2 + 0.5),
// right = left + max(1, floor(side_w + 0.5)); likewise top/bottom. All in double, as Python floats.
// Returns false for a box that is not finite or has x2 <= x1 or y2 <= y1.
bool ComputeCropWindow(const double box[4], const CropSpec& spec, CropWindow* window);

// Cuts `window` out of `src`; pixels outside the image repeat the nearest border pixel (replicate) or
// are zero (constant).
Image CropImage(const ImageView& src, const CropWindow& window, BorderMode border);

}  // namespace mobilefer

#endif  // MOBILEFER_CORE_CROP_H_
