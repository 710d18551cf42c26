"""Exporters: ONNX (verified against onnxruntime) and TNN (written in pure Python)."""

from __future__ import annotations

from typing import Any

from mobilefer.export.onnx import OnnxExport, export_onnx_bytes, export_spec, to_onnx, verify_onnx

__all__ = ["OnnxExport", "export_onnx_bytes", "export_spec", "to_onnx", "verify_onnx", "to_tnn"]


def to_tnn(*args: Any, **kwargs: Any) -> Any:
    """Export to TNN (``.tnnproto`` + ``.tnnmodel``); see :mod:`mobilefer.export.tnn`."""
    from mobilefer.export import tnn

    return tnn.to_tnn(*args, **kwargs)
