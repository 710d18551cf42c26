"""Exporters: ONNX (verified against onnxruntime), TNN (written in pure Python) and the Android bundle."""

from __future__ import annotations

from typing import Any

from mobilefer.export.bundle import Bundle, BundleRunner, android_bundle
from mobilefer.export.onnx import OnnxExport, export_onnx_bytes, export_spec, to_onnx, verify_onnx

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
