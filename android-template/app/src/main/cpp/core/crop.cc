#include "core/crop.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace mobilefer {

bool ComputeCropWindow(const double box[4], const CropSpec& spec, CropWindow* window) {
  const double x1 = box[0], y1 = box[1], x2 = box[2], y2 = box[3];
  if (!std::isfinite(x1) || !std::isfinite(y1) || !std::isfinite(x2) || !std::isfinite(y2) || x2 <= x1 ||
      y2 <= y1) {
    return false;
  }
  double w = x2 - x1;
  double h = y2 - y1;
  const double cx = (x1 + x2) / 2.0;
  double cy = (y1 + y2) / 2.0;
  const double shift = spec.shift_y * h;
  cy = cy + shift;
  if (spec.square) {
    w = h = std::max(w, h);
  }
  const double scale = 1.0 + 2.0 * spec.margin;
  const double side_w = w * scale;
  const double side_h = h * scale;
  const double left = std::floor(cx - side_w / 2.0 + 0.5);
  const double top = std::floor(cy - side_h / 2.0 + 0.5);
  window->left = static_cast<int>(left);
  window->top = static_cast<int>(top);
  window->right = window->left + std::max(1, static_cast<int>(std::floor(side_w + 0.5)));
  window->bottom = window->top + std::max(1, static_cast<int>(std::floor(side_h + 0.5)));
  return true;
}

Image CropImage(const ImageView& src, const CropWindow& window, BorderMode border) {
  const int cn = src.channels;
  Image out(window.width(), window.height(), cn);
  for (int r = 0; r < out.height; ++r) {
    const int sy = window.top + r;
    uint8_t* d = out.row(r);
    const bool row_inside = sy >= 0 && sy < src.height;
    if (!row_inside && border == BorderMode::kConstant) {
      std::memset(d, 0, static_cast<size_t>(out.width) * cn);
      continue;
    }
    const uint8_t* s = src.row(std::min(std::max(sy, 0), src.height - 1));
    for (int c = 0; c < out.width; ++c) {
      const int sx = window.left + c;
      uint8_t* px = d + static_cast<size_t>(c) * cn;
      if (sx >= 0 && sx < src.width) {
        std::memcpy(px, s + static_cast<size_t>(sx) * cn, cn);
      } else if (border == BorderMode::kConstant) {
        std::memset(px, 0, cn);
      } else {
        std::memcpy(px, s + static_cast<size_t>(std::min(std::max(sx, 0), src.width - 1)) * cn, cn);
      }
    }
  }
  return out;
}

}  // namespace mobilefer
