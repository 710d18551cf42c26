"""mobilefer: real-time facial expression recognition for laptops and Android.

Quick start::

    from mobilefer import Pipeline
    results = Pipeline().predict(frame_bgr)

Heavy submodules are imported lazily so ``import mobilefer`` stays cheap and free of side effects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mobilefer.errors import MobileferError

__version__ = "0.1.0"

__all__ = ["MobileferError", "Pipeline", "FaceResult", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from mobilefer.pipeline import FaceResult, Pipeline


def __getattr__(name: str) -> Any:
    if name in ("Pipeline", "FaceResult"):
        from mobilefer import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'mobilefer' has no attribute {name!r}")
