"""In-memory form of a TNN model: the ``.tnnproto`` graph plus the ``.tnnmodel`` weights.

The classes here are plain frozen containers shared by the writer, the reader, the numpy executor
and the ONNX converter. They hold no behaviour beyond a few look-ups; the format rules live in
:mod:`mobilefer.export.tnn.writer` (what may be written) and :mod:`mobilefer.export.tnn.reader`
(what is accepted when read back).

Constants shared by all modules (magic numbers, layer-type enums, data-type codes, name rules) are
defined here so that the writer and the reader cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

__all__ = [
    "MAGIC_V1",
    "MAGIC_V2",
    "MAX_SEGMENT_CHARS",
    "MAX_ELEMENTS",
    "LAYER_TYPE_ENUM",
    "RESOURCE_LAYOUT",
    "DATA_TYPE_CODES",
    "TnnInput",
    "TnnLayer",
    "TnnResource",
    "TnnModel",
    "TnnFiles",
    "name_problem",
]

#: Magic number of the v1 proto header / model file (0xFABC0002).
MAGIC_V1 = 0xFABC0002
#: Magic number of the v2 proto header / model file (0xFABC0004); mobilefer always writes v2.
MAGIC_V2 = 0xFABC0004

#: TNN's tokenizer copies each comma-separated proto segment into a 4096-byte buffer: longer
#: segments are silently truncated, so a writer must keep every segment at or below this length.
MAX_SEGMENT_CHARS = 4095

#: Upper bound on the element count of any tensor (TNN counts elements in a signed 32-bit int).
MAX_ELEMENTS = 2**31 - 1

#: TNN ``LayerType`` enum values (``source/tnn/core/layer_type.h``) of the type strings mobilefer
#: reads and writes. The ``.tnnmodel`` record header carries this value next to the type string.
LAYER_TYPE_ENUM: Mapping[str, int] = MappingProxyType(
    {
        "Convolution": 1,
        "BatchNormCxx": 2,
        "Pooling": 4,
        "ReLU": 5,
        "Concat": 8,
        "Reshape": 9,
        "Flatten": 10,
        "Scale": 16,
        "InnerProduct": 19,
        "Softmax": 21,
        "SoftmaxCaffe": 21,
        "Sigmoid": 23,
        "Permute": 32,
        "Add": 38,
        "Tanh": 39,
        "Mul": 42,
        "Sub": 108,
        "ReLU6": 125,
        "ReduceSum": 133,
        "Exp": 141,
        "ReduceMean": 169,
        "Clip": 171,
        "Div": 175,
        "ReduceMax": 177,
        "StridedSliceV2": 306,
    }
)

#: Layer types that own a ``.tnnmodel`` record, with the names of the buffers in their payload.
#: ``Convolution`` and ``Scale`` may omit their second buffer (``has_bias`` / ``bias_term`` = 0).
RESOURCE_LAYOUT: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "Convolution": ("filter", "bias"),
        "InnerProduct": ("weight", "bias"),
        "BatchNormCxx": ("scale", "bias"),
        "Scale": ("scale", "bias"),
        "Add": ("element",),
        "Sub": ("element",),
        "Mul": ("element",),
        "Div": ("element",),
    }
)

#: TNN ``DataType`` codes (``include/tnn/core/common.h``) of the numpy dtypes a buffer may hold.
#: Code 4 (bfp16) is read (converted to float32) but never written.
DATA_TYPE_CODES: Mapping[str, int] = MappingProxyType(
    {"float32": 0, "float16": 1, "int8": 2, "int32": 3, "int64": 5, "uint32": 6}
)

_FORBIDDEN_NAME_CHARS = frozenset(",\"';")


def name_problem(name: str, *, is_input: bool = False) -> str | None:
    """Why ``name`` cannot be written into a ``.tnnproto`` (``None`` if it can).

    TNN splits the proto on commas, drops double quotes and newlines, splits lines on spaces and
    input groups on colons, and trims control characters; a name containing any of those would be
    misread. mobilefer also refuses non-ASCII and single quotes / semicolons (quote and separator
    characters of TNN's tokenizer in other modes) to stay on the safe side.

    Args:
        name: A blob or layer name.
        is_input: Input names must also avoid ``:`` (the separator of the input line).
    """
    if not name:
        return "the name is empty"
    if len(name) > 1024:
        return f"the name is {len(name)} characters long (mobilefer allows 1024)"
    for ch in name:
        code = ord(ch)
        if code <= 0x20 or code >= 0x7F:
            return f"it contains the character {ch!r} (only printable ASCII without spaces is allowed)"
        if ch in _FORBIDDEN_NAME_CHARS:
            return f"it contains {ch!r}"
        if is_input and ch == ":":
            return "input names must not contain ':'"
    return None


@dataclass(frozen=True)
class TnnInput:
    """One network input of the ``.tnnproto`` (segment 1).

    Attributes:
        name: Blob name.
        shape: Static dimensions, batch first (NCHW for images).
        data_type: TNN ``DataType`` code; 0 (float32) for every model mobilefer writes.
    """

    name: str
    shape: tuple[int, ...]
    data_type: int = 0


@dataclass(frozen=True)
class TnnLayer:
    """One layer line of the ``.tnnproto``.

    Attributes:
        type: TNN type string (``"Convolution"``, ``"ReLU6"``, ...).
        name: Layer name, unique in the file; weights are looked up by it.
        inputs: Input blob names.
        outputs: Output blob names.
        params: Parameter tokens after the blob names, exactly as written in the file.
    """

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class TnnResource:
    """The ``.tnnmodel`` record of one layer.

    Attributes:
        layer_type: TNN type string of the owning layer (a key of :data:`RESOURCE_LAYOUT`).
        layer_name: Name of the owning layer.
        buffers: The payload buffers in file order (see :data:`RESOURCE_LAYOUT`); their numpy dtype
            is the stored data type (float16 buffers are half-precision weights).
    """

    layer_type: str
    layer_name: str
    buffers: tuple[np.ndarray, ...]


def _frozen_mapping(value: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True, eq=False)
class TnnModel:
    """A whole TNN model: graph (``.tnnproto``) and weights (``.tnnmodel``).

    Attributes:
        inputs: Network inputs with their static shapes.
        outputs: Output blob names.
        layers: Layers in execution (file) order.
        resources: Weight records keyed by layer name.
        constants: The optional constant-map trailer of the ``.tnnmodel`` (blob name -> array).
    """

    inputs: tuple[TnnInput, ...]
    outputs: tuple[str, ...]
    layers: tuple[TnnLayer, ...]
    resources: Mapping[str, TnnResource] = field(default_factory=dict)
    constants: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "resources", _frozen_mapping(self.resources))
        object.__setattr__(self, "constants", _frozen_mapping(self.constants))

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the network inputs, in file order."""
        return tuple(item.name for item in self.inputs)

    def layer(self, name: str) -> TnnLayer:
        """The layer called ``name``.

        Raises:
            KeyError: If there is no such layer.
        """
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


@dataclass(frozen=True)
class TnnFiles:
    """The pair of files written for one model.

    Attributes:
        proto: Path of the ``.tnnproto`` (graph, text).
        model: Path of the ``.tnnmodel`` (weights, binary).
        input_names: Network input blob names (``("input",)`` for mobilefer models).
        output_names: Network output blob names (``("logits",)``, or ``("scores", "boxes")``).
        input_shapes: Static input shapes, in the order of ``input_names``.
        half: Whether conv / inner-product weights were stored as float16.
    """

    proto: Path
    model: Path
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    half: bool = False
