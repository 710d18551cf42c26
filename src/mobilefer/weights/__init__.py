"""Weights registry and verified resolution of weight files.

Typical use::

    from mobilefer.weights import resolve
    path = resolve("ultraface-rfb-320")              # cache, else download (hash-checked)
    path = resolve("ultraface-rfb-320", path="dir/")  # explicit directory or file, verified

Nothing here touches the network or the disk at import time. See ``docs/weights.md``.
"""

from __future__ import annotations

from mobilefer.weights.download import cache_dir, download, sha256_file, verify_file
from mobilefer.weights.registry import ULTRAFACE_PRESET, WeightsRecord, get_record, list_records
from mobilefer.weights.resolve import offline_mode, resolve

__all__ = [
    "ULTRAFACE_PRESET",
    "WeightsRecord",
    "cache_dir",
    "download",
    "get_record",
    "list_records",
    "offline_mode",
    "resolve",
    "sha256_file",
    "verify_file",
]
