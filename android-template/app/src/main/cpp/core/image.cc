#include "core/image.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace mobilefer {

namespace {

inline uint8_t GrayOf(int r, int g, int b, const GrayWeights& w) {
  const int v = (r * w.r + g * w.g + b * w.b + (1 << (w.shift - 1))) >> w.shift;
  return static_cast<uint8_t>(v > 255 ? 255 : v);
}

// OpenCV's BT.601 YUV420 -> RGB fixed point (ITUR_BT_601_* constants, 20-bit shift).
constexpr int kYuvShift = 20;
constexpr int kYuvCY = 1220542;
constexpr int kYuvCUB = 2116026;
constexpr int kYuvCUG = -409993;
constexpr int kYuvCVG = -852492;
constexpr int kYuvCVR = 1673527;

inline uint8_t SaturateU8(int v) { return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v)); }

bool CheckView(const ImageView& v, int channels, std::string* error) {
  if (v.data == nullptr || v.width < 1 || v.height < 1) {
    if (error) *error = "empty image";
    return false;
  }
  if (v.channels != channels || v.stride < v.width * v.channels) {
    if (error) *error = "image channels/stride do not match its format";
    return false;
  }
  return true;
}

// Channel index of R, G, B in a source format (gray: all 0).
void SourceOffsets(PixelFormat f, int* r, int* g, int* b) {
  switch (f) {
    case PixelFormat::kRgb:
    case PixelFormat::kRgba: *r = 0; *g = 1; *b = 2; return;
    case PixelFormat::kBgr:
    case PixelFormat::kBgra: *r = 2; *g = 1; *b = 0; return;
    case PixelFormat::kGray: *r = 0; *g = 0; *b = 0; return;
  }
}

// ---------------------------------------------------------------- resize (OpenCV INTER_LINEAR, uint8)
constexpr int kCoefBits = 11;                 // INTER_RESIZE_COEF_BITS
constexpr int kCoefScale = 1 << kCoefBits;    // INTER_RESIZE_COEF_SCALE

inline int16_t RoundToShort(float v) {
  // saturate_cast<short>(float): round half to even, then saturate.
  long r = std::lrint(v);
  if (r < -32768) r = -32768;
  if (r > 32767) r = 32767;
  return static_cast<int16_t>(r);
}

struct LinearTaps {
  std::vector<int> offset;      // first source index
  std::vector<int16_t> weight;  // two weights per destination index
  std::vector<uint8_t> single;  // 1: only the first tap is used (right/bottom edge)
};

// Horizontal taps: fx = (float)((dx + 0.5) * scale - 0.5), sx = floor(fx), fx -= sx; clamped at the
// borders as OpenCV's resizeGeneric does (left: sx = 0, fx = 0; right: sx = src - 1, fx = 0, one tap).
LinearTaps HorizontalTaps(int src, int dst) {
  LinearTaps t;
  t.offset.resize(dst);
  t.weight.resize(static_cast<size_t>(dst) * 2);
  t.single.resize(dst);
  const double inv_scale = static_cast<double>(dst) / src;
  const double scale = 1.0 / inv_scale;
  for (int d = 0; d < dst; ++d) {
    float f = static_cast<float>((d + 0.5) * scale - 0.5);
    int s = static_cast<int>(std::floor(f));
    f -= static_cast<float>(s);
    bool single = false;
    if (s < 0) {
      f = 0.f;
      s = 0;
    }
    if (s + 1 >= src) {
      single = true;
      if (s >= src - 1) {
        f = 0.f;
        s = src - 1;
      }
    }
    t.offset[d] = s;
    t.single[d] = single ? 1 : 0;
    t.weight[2 * d] = RoundToShort((1.f - f) * kCoefScale);
    t.weight[2 * d + 1] = RoundToShort(f * kCoefScale);
  }
  return t;
}

// Vertical taps: rows floor(fy) and floor(fy) + 1, each clamped to the image; weights not clamped.
LinearTaps VerticalTaps(int src, int dst) {
  LinearTaps t;
  t.offset.resize(dst);
  t.weight.resize(static_cast<size_t>(dst) * 2);
  t.single.assign(dst, 0);
  const double inv_scale = static_cast<double>(dst) / src;
  const double scale = 1.0 / inv_scale;
  for (int d = 0; d < dst; ++d) {
    float f = static_cast<float>((d + 0.5) * scale - 0.5);
    int s = static_cast<int>(std::floor(f));
    f -= static_cast<float>(s);
    t.offset[d] = s;
    t.weight[2 * d] = RoundToShort((1.f - f) * kCoefScale);
    t.weight[2 * d + 1] = RoundToShort(f * kCoefScale);
  }
  return t;
}

inline int ClampIndex(int v, int n) { return v < 0 ? 0 : (v >= n ? n - 1 : v); }

// One output value of the vertical pass, with the rounding of OpenCV's vectorised code
// (VResizeLinearVec_32s8u): ((S0 >> 4) * b0 >> 16) + ((S1 >> 4) * b1 >> 16), then (+2) >> 2.
inline uint8_t VerticalMix(int s0, int s1, int b0, int b1) {
  auto to_s16 = [](int v) { return v < -32768 ? -32768 : (v > 32767 ? 32767 : v); };
  const int a = (to_s16(s0 >> 4) * b0) >> 16;
  const int b = (to_s16(s1 >> 4) * b1) >> 16;
  return SaturateU8((a + b + 2) >> 2);
}

void ResizeLinear(const ImageView& src, int width, int height, Image* dst) {
  const int cn = src.channels;
  const LinearTaps xt = HorizontalTaps(src.width, width);
  const LinearTaps yt = VerticalTaps(src.height, height);
  const size_t row_len = static_cast<size_t>(width) * cn;
  // Horizontal pass of the two source rows of each output row (recomputed per row: cheap at network
  // input sizes, and no cache to get wrong).
  std::vector<int> r0(row_len), r1(row_len);
  auto horizontal = [&](int sy, std::vector<int>* out) {
    const uint8_t* s = src.row(sy);
    for (int dx = 0; dx < width; ++dx) {
      const int sx = xt.offset[dx] * cn;
      const int a0 = xt.weight[2 * dx];
      const int a1 = xt.weight[2 * dx + 1];
      int* o = out->data() + static_cast<size_t>(dx) * cn;
      if (xt.single[dx]) {
        for (int c = 0; c < cn; ++c) o[c] = s[sx + c] * a0;
      } else {
        for (int c = 0; c < cn; ++c) o[c] = s[sx + c] * a0 + s[sx + cn + c] * a1;
      }
    }
  };
  *dst = Image(width, height, cn);
  for (int dy = 0; dy < height; ++dy) {
    const int sy0 = ClampIndex(yt.offset[dy], src.height);
    const int sy1 = ClampIndex(yt.offset[dy] + 1, src.height);
    const int b0 = yt.weight[2 * dy];
    const int b1 = yt.weight[2 * dy + 1];
    horizontal(sy0, &r0);
    horizontal(sy1, &r1);
    uint8_t* d = dst->row(dy);
    for (size_t i = 0; i < row_len; ++i) d[i] = VerticalMix(r0[i], r1[i], b0, b1);
  }
}

void ResizeNearest(const ImageView& src, int width, int height, Image* dst) {
  const int cn = src.channels;
  const double fx = 1.0 / (static_cast<double>(width) / src.width);
  const double fy = 1.0 / (static_cast<double>(height) / src.height);
  std::vector<int> xofs(width);
  for (int x = 0; x < width; ++x) {
    xofs[x] = std::min(static_cast<int>(std::floor(x * fx)), src.width - 1) * cn;
  }
  *dst = Image(width, height, cn);
  for (int y = 0; y < height; ++y) {
    const int sy = std::min(static_cast<int>(std::floor(y * fy)), src.height - 1);
    const uint8_t* s = src.row(sy);
    uint8_t* d = dst->row(y);
    for (int x = 0; x < width; ++x) std::memcpy(d + static_cast<size_t>(x) * cn, s + xofs[x], cn);
  }
}

}  // namespace

int PixelFormatChannels(PixelFormat format) {
  switch (format) {
    case PixelFormat::kGray: return 1;
    case PixelFormat::kRgb:
    case PixelFormat::kBgr: return 3;
    case PixelFormat::kRgba:
    case PixelFormat::kBgra: return 4;
  }
  return 0;
}

bool ConvertColor(const ImageView& src, PixelFormat src_format, ColorOrder dst_order, const GrayWeights& gray,
                  Image* dst, std::string* error) {
  const int scn = PixelFormatChannels(src_format);
  if (!CheckView(src, scn, error)) return false;
  if (dst_order == ColorOrder::kGray && src_format != PixelFormat::kGray && !ValidateGrayWeights(gray).empty()) {
    if (error) *error = ValidateGrayWeights(gray);
    return false;
  }
  const int dcn = dst_order == ColorOrder::kGray ? 1 : 3;
  *dst = Image(src.width, src.height, dcn);
  int ri = 0, gi = 0, bi = 0;
  SourceOffsets(src_format, &ri, &gi, &bi);
  for (int y = 0; y < src.height; ++y) {
    const uint8_t* s = src.row(y);
    uint8_t* d = dst->row(y);
    for (int x = 0; x < src.width; ++x, s += scn) {
      if (src_format == PixelFormat::kGray) {
        for (int c = 0; c < dcn; ++c) d[c] = s[0];
        d += dcn;
        continue;
      }
      const int r = s[ri], g = s[gi], b = s[bi];
      switch (dst_order) {
        case ColorOrder::kGray: *d++ = GrayOf(r, g, b, gray); break;
        case ColorOrder::kRgb: d[0] = static_cast<uint8_t>(r); d[1] = static_cast<uint8_t>(g);
          d[2] = static_cast<uint8_t>(b); d += 3; break;
        case ColorOrder::kBgr: d[0] = static_cast<uint8_t>(b); d[1] = static_cast<uint8_t>(g);
          d[2] = static_cast<uint8_t>(r); d += 3; break;
      }
    }
  }
  return true;
}

bool ConvertNv21(const uint8_t* y_plane, int y_stride, const uint8_t* vu_plane, int vu_stride, int width,
                 int height, ColorOrder dst_order, Image* dst, std::string* error) {
  if (y_plane == nullptr || vu_plane == nullptr || width < 2 || height < 2 || (width % 2) || (height % 2) ||
      y_stride < width || vu_stride < width) {
    if (error) *error = "NV21 needs non-empty planes, even width and height, and strides >= width";
    return false;
  }
  const int dcn = dst_order == ColorOrder::kGray ? 1 : 3;
  *dst = Image(width, height, dcn);
  for (int y = 0; y < height; ++y) {
    const uint8_t* yr = y_plane + static_cast<size_t>(y) * y_stride;
    uint8_t* d = dst->row(y);
    if (dst_order == ColorOrder::kGray) {
      std::memcpy(d, yr, width);
      continue;
    }
    const uint8_t* vu = vu_plane + static_cast<size_t>(y / 2) * vu_stride;
    for (int x = 0; x < width; ++x) {
      const int v = vu[(x / 2) * 2] - 128;
      const int u = vu[(x / 2) * 2 + 1] - 128;
      const int half = 1 << (kYuvShift - 1);
      const int ruv = half + kYuvCVR * v;
      const int guv = half + kYuvCVG * v + kYuvCUG * u;
      const int buv = half + kYuvCUB * u;
      const int yy = std::max(0, static_cast<int>(yr[x]) - 16) * kYuvCY;
      const uint8_t r = SaturateU8((yy + ruv) >> kYuvShift);
      const uint8_t g = SaturateU8((yy + guv) >> kYuvShift);
      const uint8_t b = SaturateU8((yy + buv) >> kYuvShift);
      if (dst_order == ColorOrder::kRgb) {
        d[0] = r; d[1] = g; d[2] = b;
      } else {
        d[0] = b; d[1] = g; d[2] = r;
      }
      d += 3;
    }
  }
  return true;
}

bool Orient(const ImageView& src, int rotation_cw, bool mirror, Image* dst, std::string* error) {
  if (!CheckView(src, src.channels, error)) return false;
  if (rotation_cw != 0 && rotation_cw != 90 && rotation_cw != 180 && rotation_cw != 270) {
    if (error) *error = "rotation must be 0, 90, 180 or 270 degrees, got " + std::to_string(rotation_cw);
    return false;
  }
  const int cn = src.channels;
  const int sw = src.width, sh = src.height;
  const bool swap = rotation_cw == 90 || rotation_cw == 270;
  const int dw = swap ? sh : sw;
  const int dh = swap ? sw : sh;
  *dst = Image(dw, dh, cn);
  for (int r = 0; r < dh; ++r) {
    uint8_t* d = dst->row(r);
    for (int c0 = 0; c0 < dw; ++c0) {
      const int c = mirror ? dw - 1 - c0 : c0;  // mirror is applied after the rotation
      int sr = r, sc = c;
      switch (rotation_cw) {
        case 90: sr = sh - 1 - c; sc = r; break;
        case 180: sr = sh - 1 - r; sc = sw - 1 - c; break;
        case 270: sr = c; sc = sw - 1 - r; break;
        default: break;
      }
      std::memcpy(d + static_cast<size_t>(c0) * cn, src.row(sr) + static_cast<size_t>(sc) * cn, cn);
    }
  }
  return true;
}

bool Resize(const ImageView& src, int width, int height, Interpolation interpolation, Image* dst,
            std::string* error) {
  if (!CheckView(src, src.channels, error)) return false;
  if (width < 1 || height < 1) {
    if (error) *error = "resize target must be at least 1x1";
    return false;
  }
  if (width == src.width && height == src.height) {
    *dst = Image(width, height, src.channels);
    for (int y = 0; y < height; ++y) std::memcpy(dst->row(y), src.row(y), static_cast<size_t>(width) * src.channels);
    return true;
  }
  switch (interpolation) {
    case Interpolation::kLinear: ResizeLinear(src, width, height, dst); return true;
    case Interpolation::kNearest: ResizeNearest(src, width, height, dst); return true;
    case Interpolation::kArea: break;
  }
  if (error) *error = "interpolation 'area' is not implemented by the native core";
  return false;
}

void NormalizeToNchw(const ImageView& src, const std::vector<double>& mean, const std::vector<double>& std,
                     float* out) {
  const int cn = src.channels;
  const size_t plane = static_cast<size_t>(src.width) * src.height;
  for (int c = 0; c < cn; ++c) {
    const float m = static_cast<float>(mean[c]);
    const float s = static_cast<float>(std[c]);
    float* o = out + plane * c;
    for (int y = 0; y < src.height; ++y) {
      const uint8_t* r = src.row(y) + c;
      for (int x = 0; x < src.width; ++x) *o++ = (static_cast<float>(r[static_cast<size_t>(x) * cn]) - m) / s;
    }
  }
}

void FlipNchwHorizontal(const float* in, int channels, int height, int width, float* out) {
  for (int c = 0; c < channels; ++c) {
    for (int y = 0; y < height; ++y) {
      const float* i = in + (static_cast<size_t>(c) * height + y) * width;
      float* o = out + (static_cast<size_t>(c) * height + y) * width;
      for (int x = 0; x < width; ++x) o[x] = i[width - 1 - x];
    }
  }
}

}  // namespace mobilefer
