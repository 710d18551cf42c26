"""TNN export in pure Python: ONNX -> ``.tnnproto`` / ``.tnnmodel`` (v2), a reader and a numpy executor.

Typical use::

    from mobilefer.export.tnn import onnx_to_tnn, read_tnn, run_tnn, to_tnn

    files = to_tnn(classifier, "out/fer", input_size=64)    # torch model -> ONNX -> verified TNN
    files = onnx_to_tnn("model.onnx", "out/model")          # out/model.tnnproto + out/model.tnnmodel
    model = read_tnn(files.proto)                            # validated graph + numpy weights
    outputs = run_tnn(model, {"input": x})                   # TNN semantics, numpy

The heavy ``onnx`` import happens only inside the conversion functions. See ``docs/export-tnn.md``
for the op coverage table and ``/work/shared/docs/tnn-format.md`` for the format itself.
"""

from __future__ import annotations

from mobilefer.export.tnn.convert import (
    SUPPORTED_ONNX_OPS,
    onnx_to_tnn,
    onnx_to_tnn_model,
    simplify_onnx,
    to_tnn,
    verify_tnn,
)
from mobilefer.export.tnn.executor import SUPPORTED_LAYERS, infer_tnn_shapes, run_tnn
from mobilefer.export.tnn.graph import TnnFiles, TnnInput, TnnLayer, TnnModel, TnnResource
from mobilefer.export.tnn.reader import read_tnn
from mobilefer.export.tnn.writer import format_model, format_proto, validate_tnn_model, write_tnn

__all__ = [
    "SUPPORTED_LAYERS",
    "SUPPORTED_ONNX_OPS",
    "TnnFiles",
    "TnnInput",
    "TnnLayer",
    "TnnModel",
    "TnnResource",
    "format_model",
    "format_proto",
    "infer_tnn_shapes",
    "onnx_to_tnn",
    "onnx_to_tnn_model",
    "read_tnn",
    "run_tnn",
    "simplify_onnx",
    "to_tnn",
    "validate_tnn_model",
    "verify_tnn",
    "write_tnn",
]
