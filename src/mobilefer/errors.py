"""Exception hierarchy of mobilefer.

Every error mobilefer raises on purpose derives from :class:`MobileferError` and, where one fits,
from the matching builtin (``ValueError``, ``TypeError``, ``FileNotFoundError``, ...), so callers can
catch either. Messages say what was expected and what to do.
"""

from __future__ import annotations

__all__ = [
    "MobileferError",
    "InvalidInputError",
    "InvalidImageError",
    "InvalidConfigError",
    "WeightsError",
    "WeightsNotFoundError",
    "ChecksumMismatchError",
    "DownloadError",
    "NoShippedModelError",
    "ExportError",
    "ExportVerificationError",
    "UnsupportedOpError",
    "ModelFormatError",
    "OutputExistsError",
    "DataError",
]


class MobileferError(Exception):
    """Base class of every error mobilefer raises on purpose."""


class InvalidInputError(MobileferError, ValueError):
    """An argument has the right type but an impossible value (shape, range, name)."""


class InvalidImageError(InvalidInputError, TypeError):
    """An image argument is not an image mobilefer can use (dtype, shape, channels, type).

    Derives from both ``ValueError`` and ``TypeError``: a wrong dtype or type is a type problem,
    a wrong shape a value problem, and callers may catch either.
    """


class InvalidConfigError(MobileferError, ValueError):
    """A training/eval configuration is invalid; the message names the offending key."""


class WeightsError(MobileferError):
    """Base class of weight-resolution problems."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """Weights could not be found locally and could not (or may not) be downloaded."""


class ChecksumMismatchError(WeightsError, ValueError):
    """A weights file's SHA-256 or size does not match its registry record (tampered or truncated)."""


class DownloadError(WeightsError, ConnectionError):
    """A download failed (network unreachable, timeout, HTTP error, truncated transfer)."""


class NoShippedModelError(WeightsError, FileNotFoundError):
    """The package ships no default model of the requested kind."""


class ExportError(MobileferError, RuntimeError):
    """Base class of export failures."""


class ExportVerificationError(ExportError):
    """An exported file does not reproduce the source model within tolerance."""


class UnsupportedOpError(ExportError, NotImplementedError):
    """A graph contains an operator the target format writer does not support."""


class ModelFormatError(MobileferError, ValueError):
    """A model file (TNN, ONNX, safetensors) is malformed, truncated or has a wrong magic number."""


class OutputExistsError(MobileferError, FileExistsError):
    """An output path exists and ``force`` was not given."""


class DataError(MobileferError, ValueError):
    """A dataset is missing, unreadable or inconsistent."""
