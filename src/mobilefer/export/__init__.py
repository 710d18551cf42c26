"""Exporters: ONNX (verified against onnxruntime), TNN (written in pure Python) and the Android bundle.

The names below are imported lazily (PEP 562): ``import mobilefer.export`` (and the ``mobilefer export``
argument parser) does not import torch or onnx; using an exporter does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mobilefer._lazy import lazy_attributes

if TYPE_CHECKING:
    from mobilefer.export.bundle import Bundle, BundleRunner, android_bundle
    from mobilefer.export.onnx import OnnxExport, export_onnx_bytes, export_spec, to_onnx, verify_onnx

_HOMES = {
    "Bundle": "mobilefer.export.bundle",
    "BundleRunner": "mobilefer.export.bundle",
    "android_bundle": "mobilefer.export.bundle",
    "OnnxExport": "mobilefer.export.onnx",
    "export_onnx_bytes": "mobilefer.export.onnx",
    "export_spec": "mobilefer.export.onnx",
    "to_onnx": "mobilefer.export.onnx",
    "verify_onnx": "mobilefer.export.onnx",
}

__all__ = [
    "Bundle",
    "BundleRunner",
    "OnnxExport",
    "android_bundle",
    "export_onnx_bytes",
    "export_spec",
    "to_onnx",
    "verify_onnx",
    "to_tnn",
]


def to_tnn(*args: Any, **kwargs: Any) -> Any:
    """Export to TNN (``.tnnproto`` + ``.tnnmodel``); see :mod:`mobilefer.export.tnn`."""
    from mobilefer.export import tnn

    return tnn.to_tnn(*args, **kwargs)


__getattr__, __dir__ = lazy_attributes(globals(), _HOMES, __all__)
