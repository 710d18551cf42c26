// 8-bit image operations of the native engine, written to give the same pixels as the OpenCV calls
// the Python side of mobilefer uses (checked by host-tests against golden vectors):
//
//  * ConvertColor: cv2.cvtColor BGR/RGB/BGRA/RGBA -> GRAY/BGR/RGB. Gray uses fixed-point weights from
//    the bundle (gray_weights; OpenCV 4.x: (R*9798 + G*19235 + B*3735 + 16384) >> 15), bit-exact.
//  * ConvertNv21: cv2.COLOR_YUV2{RGB,BGR,GRAY}_NV21 (BT.601 video range, OpenCV's 20-bit fixed-point
//    coefficients), bit-exact.
//  * Orient: cv2.rotate (clockwise 90/180/270) followed by an optional cv2.flip(..., 1).
//  * Resize: cv2.resize INTER_LINEAR for uint8 (half-pixel centres, 11-bit fixed-point weights and the
//    rounding of OpenCV's vectorised vertical pass), bit-exact; INTER_NEAREST, bit-exact.
//  * NormalizeToNchw: (pixel - mean) / std in float32, NCHW (mobilefer.preset.Preset.normalize).
//
// Plain C++17, no TNN or Android headers.
#ifndef MOBILEFER_CORE_IMAGE_H_
#define MOBILEFER_CORE_IMAGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"

namespace mobilefer {

// An owned, tightly packed, interleaved 8-bit image.
struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<uint8_t> data;

  Image() = default;
  Image(int w, int h, int c) : width(w), height(h), channels(c), data(static_cast<size_t>(w) * h * c) {}
  uint8_t* row(int y) { return data.data() + static_cast<size_t>(y) * width * channels; }
  const uint8_t* row(int y) const { return data.data() + static_cast<size_t>(y) * width * channels; }
  bool empty() const { return width <= 0 || height <= 0 || channels <= 0; }
};

// A borrowed interleaved 8-bit image with a row stride in bytes.
struct ImageView {
  const uint8_t* data = nullptr;
  int width = 0;
  int height = 0;
  int channels = 0;
  int stride = 0;  // bytes per row (>= width * channels)

  ImageView() = default;
  ImageView(const uint8_t* d, int w, int h, int c, int s) : data(d), width(w), height(h), channels(c), stride(s) {}
  explicit ImageView(const Image& image)
      : data(image.data.data()), width(image.width), height(image.height), channels(image.channels),
        stride(image.width * image.channels) {}
  const uint8_t* row(int y) const { return data + static_cast<size_t>(y) * stride; }
};

// Channel layout of an interleaved buffer.
enum class PixelFormat { kGray = 0, kRgb = 1, kBgr = 2, kRgba = 3, kBgra = 4 };

int PixelFormatChannels(PixelFormat format);

// cvtColor to `dst_order` (gray -> 1 channel, rgb/bgr -> 3 channels). Returns false (with `error`) when
// the view does not match the format.
bool ConvertColor(const ImageView& src, PixelFormat src_format, ColorOrder dst_order, const GrayWeights& gray,
                  Image* dst, std::string* error);

// NV21 (full-resolution Y plane, then a half-resolution plane of interleaved V, U) to gray/rgb/bgr.
// Width and height must be even.
bool ConvertNv21(const uint8_t* y_plane, int y_stride, const uint8_t* vu_plane, int vu_stride, int width,
                 int height, ColorOrder dst_order, Image* dst, std::string* error);

// Rotates clockwise by `rotation_cw` (0, 90, 180 or 270 degrees), then mirrors left-right if `mirror`.
bool Orient(const ImageView& src, int rotation_cw, bool mirror, Image* dst, std::string* error);

// Resizes to width x height. Same size: a plain copy.
bool Resize(const ImageView& src, int width, int height, Interpolation interpolation, Image* dst,
            std::string* error);

// Writes channels x height x width float32 values (pixel - mean[c]) / std[c], computed in float.
void NormalizeToNchw(const ImageView& src, const std::vector<double>& mean, const std::vector<double>& std,
                     float* out);

// Mirrors a C x H x W float tensor left-right (mobilefer's test-time augmentation).
void FlipNchwHorizontal(const float* in, int channels, int height, int width, float* out);

}  // namespace mobilefer

#endif  // MOBILEFER_CORE_IMAGE_H_
