#include "core/smoothing.h"

#include <algorithm>
#include <cmath>

namespace mobilefer {

double BoxIou(const BoxD& a, const BoxD& b) {
  const double ix1 = std::max(a[0], b[0]);
  const double iy1 = std::max(a[1], b[1]);
  const double ix2 = std::min(a[2], b[2]);
  const double iy2 = std::min(a[3], b[3]);
  const double inter = std::max(0.0, ix2 - ix1) * std::max(0.0, iy2 - iy1);
  const double area_a = std::max(0.0, a[2] - a[0]) * std::max(0.0, a[3] - a[1]);
  const double area_b = std::max(0.0, b[2] - b[0]) * std::max(0.0, b[3] - b[1]);
  const double uni = area_a + area_b - inter;
  return uni > 0 ? inter / uni : 0.0;
}

std::vector<TrackOutput> SmoothingTracker::Update(int64_t frame_index, const std::vector<BoxD>& boxes,
                                                  const std::vector<std::vector<float>>& probs) {
  struct Pair {
    double iou;
    size_t det;
    size_t track;
  };
  std::vector<Pair> pairs;
  pairs.reserve(boxes.size() * tracks_.size());
  for (size_t d = 0; d < boxes.size(); ++d) {
    for (size_t t = 0; t < tracks_.size(); ++t) pairs.push_back({BoxIou(boxes[d], tracks_[t].box), d, t});
  }
  std::stable_sort(pairs.begin(), pairs.end(), [](const Pair& x, const Pair& y) { return x.iou > y.iou; });
  std::vector<int> assigned(boxes.size(), -1);
  std::vector<char> used(tracks_.size(), 0);
  for (const Pair& p : pairs) {
    if (p.iou < spec_.match_iou || std::isnan(p.iou)) break;
    if (assigned[p.det] >= 0 || used[p.track]) continue;
    assigned[p.det] = static_cast<int>(p.track);
    used[p.track] = 1;
  }
  const float keep = static_cast<float>(spec_.alpha);
  const float take = static_cast<float>(1.0 - spec_.alpha);
  std::vector<TrackOutput> out;
  out.reserve(boxes.size());
  for (size_t d = 0; d < boxes.size(); ++d) {
    const std::vector<float>& p = probs[d];
    if (assigned[d] >= 0) {
      Track& track = tracks_[assigned[d]];
      for (size_t k = 0; k < track.probs.size() && k < p.size(); ++k) {
        const float past = keep * track.probs[k];
        const float now = take * p[k];
        track.probs[k] = past + now;
      }
      track.box = boxes[d];
      track.last_seen = frame_index;
      track.hits += 1;
      out.push_back({track.id, track.probs});
    } else {
      tracks_.push_back({next_id_++, boxes[d], p, frame_index, 1});
      out.push_back({tracks_.back().id, p});
    }
  }
  tracks_.erase(std::remove_if(tracks_.begin(), tracks_.end(),
                               [&](const Track& t) { return frame_index - t.last_seen > spec_.max_age; }),
                tracks_.end());
  return out;
}

void SmoothingTracker::Reset() {
  tracks_.clear();
  next_id_ = 0;
}

}  // namespace mobilefer
