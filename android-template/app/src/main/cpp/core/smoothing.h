// Temporal smoothing of per-face probabilities: mobilefer.video.SmoothingTracker in C++.
//
// Detections are matched greedily to live tracks in decreasing IoU order (IoU >= match_iou; ties in
// the order detection-major, track-minor, as Python's stable sort); a matched track's probabilities
// become alpha * previous + (1 - alpha) * current (float32); unmatched detections start new tracks
// with their raw probabilities; tracks unseen for more than max_age frames are dropped.
//
// Plain C++17, no TNN or Android headers.
#ifndef MOBILEFER_CORE_SMOOTHING_H_
#define MOBILEFER_CORE_SMOOTHING_H_

#include <array>
#include <cstdint>
#include <vector>

#include "core/config.h"

namespace mobilefer {

using BoxD = std::array<double, 4>;  // (x1, y1, x2, y2) in pixels

// IoU of two boxes (0 when the union is empty), in double as mobilefer.video.box_iou.
double BoxIou(const BoxD& a, const BoxD& b);

struct TrackOutput {
  int track_id = -1;
  std::vector<float> probs;
};

class SmoothingTracker {
 public:
  explicit SmoothingTracker(const SmoothingSpec& spec) : spec_(spec) {}

  // Feeds one frame's boxes and probabilities (one row per box); returns one output per box, in order.
  std::vector<TrackOutput> Update(int64_t frame_index, const std::vector<BoxD>& boxes,
                                  const std::vector<std::vector<float>>& probs);
  void Reset();
  size_t num_tracks() const { return tracks_.size(); }

 private:
  struct Track {
    int id;
    BoxD box;
    std::vector<float> probs;
    int64_t last_seen;
    int hits;
  };
  SmoothingSpec spec_;
  std::vector<Track> tracks_;
  int next_id_ = 0;
};

}  // namespace mobilefer

#endif  // MOBILEFER_CORE_SMOOTHING_H_
