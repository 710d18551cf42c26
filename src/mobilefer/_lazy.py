"""Lazily imported package attributes (PEP 562), so importing a package does not import torch or onnx."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any


def lazy_attributes(
    namespace: MutableMapping[str, Any], homes: Mapping[str, str], public: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package whose names live in submodules.

    Args:
        namespace: The package's ``globals()``; a name, once imported, is stored there.
        homes: Attribute name → the module that defines it.
        public: The package's ``__all__``.
    """
    package = str(namespace.get("__name__", "package"))

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(public))

    return __getattr__, __dir__
