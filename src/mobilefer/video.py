"""Temporal smoothing for video: match faces across frames by IoU and smooth their probabilities with
an exponential moving average, so labels do not flicker.

For each new frame, detections are matched greedily to live tracks in decreasing IoU order (a pair
needs IoU >= ``match_iou``). A matched track's probabilities become
``alpha * previous + (1 - alpha) * current``; its label is the argmax of the smoothed probabilities.
Unmatched detections start new tracks (with their raw probabilities); tracks unseen for more than
``max_age`` frames are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mobilefer.errors import InvalidInputError

__all__ = ["box_iou", "SmoothingParams", "DEFAULT_SMOOTHING", "SmoothingTracker", "Track"]


@dataclass(frozen=True)
class SmoothingParams:
    """Parameters of the temporal smoothing (shared by the Python video helper and the Android bundle).

    Attributes:
        alpha: EMA weight of the past, in [0, 1) (0 = no smoothing).
        match_iou: Minimum IoU for a detection to continue a track, in (0, 1].
        max_age: Frames a track survives without a match.
    """

    alpha: float = 0.6
    match_iou: float = 0.3
    max_age: int = 5


#: The defaults of :meth:`mobilefer.Pipeline.iter_video` and of exported bundles.
DEFAULT_SMOOTHING = SmoothingParams()


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``(x1, y1, x2, y2)`` boxes (0 when either is empty)."""
    ix1, iy1 = max(a[0], b[0]), max(a[1], b[1])
    ix2, iy2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, ix2 - ix1) * max(0.0, iy2 - iy1)
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class Track:
    """A face followed across frames."""

    track_id: int
    box: tuple[float, float, float, float]
    probs: np.ndarray
    last_seen: int
    hits: int = field(default=1)


class SmoothingTracker:
    """IoU matching + EMA smoothing of class probabilities.

    Args:
        alpha: Weight of the past in the EMA, in [0, 1) (0 = no smoothing).
        match_iou: Minimum IoU for a detection to continue a track, in (0, 1].
        max_age: Frames a track survives without a match.
    """

    def __init__(
        self,
        alpha: float = DEFAULT_SMOOTHING.alpha,
        match_iou: float = DEFAULT_SMOOTHING.match_iou,
        max_age: int = DEFAULT_SMOOTHING.max_age,
    ) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha < 1.0:
            raise InvalidInputError(f"smoothing alpha must be in [0, 1), got {alpha!r}")
        if isinstance(match_iou, bool) or not isinstance(match_iou, (int, float)) or not 0.0 < match_iou <= 1.0:
            raise InvalidInputError(f"match_iou must be in (0, 1], got {match_iou!r}")
        if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0:
            raise InvalidInputError(f"max_age must be an int >= 0, got {max_age!r}")
        self.alpha = float(alpha)
        self.match_iou = float(match_iou)
        self.max_age = max_age
        self.tracks: list[Track] = []
        self._next_id = 0

    def update(
        self, frame_index: int, boxes: Sequence[Sequence[float]], probs: np.ndarray
    ) -> list[tuple[int, np.ndarray]]:
        """Feed one frame's boxes and (N, K) probabilities; returns ``(track_id, smoothed_probs)`` per box."""
        if len(boxes) != len(probs):
            raise InvalidInputError(f"{len(boxes)} boxes but {len(probs)} probability rows")
        pairs = sorted(
            (
                (box_iou(box, track.box), d, t)
                for d, box in enumerate(boxes)
                for t, track in enumerate(self.tracks)
            ),
            key=lambda p: -p[0],
        )
        assigned: dict[int, int] = {}
        used_tracks: set[int] = set()
        for iou, d, t in pairs:
            if iou < self.match_iou or math.isnan(iou):
                break
            if d in assigned or t in used_tracks:
                continue
            assigned[d] = t
            used_tracks.add(t)
        out: list[tuple[int, np.ndarray]] = []
        for d, box in enumerate(boxes):
            p = np.asarray(probs[d], dtype=np.float32)
            b = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
            if d in assigned:
                track = self.tracks[assigned[d]]
                track.probs = (self.alpha * track.probs + (1.0 - self.alpha) * p).astype(np.float32)
                track.box, track.last_seen = b, frame_index
                track.hits += 1
            else:
                track = Track(self._next_id, b, p.copy(), frame_index)
                self._next_id += 1
                self.tracks.append(track)
            out.append((track.track_id, track.probs.copy()))
        self.tracks = [t for t in self.tracks if frame_index - t.last_seen <= self.max_age]
        return out
