"""onnxruntime helpers: session creation with explicit options, and a cache of exported models.

The Pipeline's ``onnxruntime`` backend builds its sessions from mobilefer's own ONNX exports. Exports
are cached in ``$MOBILEFER_HOME/onnx/`` under a key derived from the weights and export settings, so
only the first use of a model pays for the export.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch

from mobilefer.errors import InvalidInputError, ModelFormatError

__all__ = ["make_session", "onnx_cache_dir", "cached_export", "model_fingerprint"]

logger = logging.getLogger(__name__)


def onnx_cache_dir() -> Path:
    """``$MOBILEFER_HOME/onnx`` (default ``~/.cache/mobilefer/onnx``)."""
    home = os.environ.get("MOBILEFER_HOME") or str(Path.home() / ".cache" / "mobilefer")
    return Path(home).expanduser() / "onnx"


def make_session(model: bytes | str | Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session with full graph optimisation.

    Args:
        model: Serialized ONNX bytes or a file path.
        threads: Intra-op threads (``None``: onnxruntime's default; 0 is the same).

    Raises:
        InvalidInputError: If ``model`` is neither bytes nor the path of an existing file, or ``threads``
            is invalid.
        ModelFormatError: If onnxruntime cannot load the model (not ONNX, truncated, unsupported, or
            external data outside the model's folder).
    """
    import onnxruntime as ort

    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 0):
        raise InvalidInputError(f"threads must be an int >= 0 or None, got {threads!r}")
    if not isinstance(model, (bytes, str, Path)):
        raise InvalidInputError(f"model must be ONNX bytes or a file path, got {type(model).__name__}")
    if not isinstance(model, bytes) and not Path(model).is_file():
        raise InvalidInputError(f"ONNX file {model} does not exist (or is not a file)")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle intra-op workers sleep instead of spinning: the Pipeline runs two sessions (detector and
    # classifier, each with its own thread pool) interleaved with Python work, and spinning workers take
    # the cores the others need. Measured on 2 cores, 2 threads, single-face 640x480 frame: quiet machine
    # 8.2 ms spinning vs 4.4 ms not; loaded machine 20.4 vs 6.9 ms. A lone detector session is faster
    # spinning (1.7 vs 2.1 ms), but not inside the Pipeline. Outputs are unaffected.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own unrelated exception types
        what = "the ONNX bytes" if isinstance(model, bytes) else str(model)
        raise ModelFormatError(f"onnxruntime cannot load {what}: {exc}") from exc


def model_fingerprint(module: torch.nn.Module, *extra: object) -> str:
    """SHA-256 over a module's state dict (names, shapes, bytes) and ``extra`` settings."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    for item in extra:
        digest.update(repr(item).encode())
    return digest.hexdigest()


def cached_export(model: Any, *, input_size: tuple[int, int] | None = None) -> bytes:
    """ONNX bytes of ``model`` (see :func:`mobilefer.export.onnx.export_spec`), verified once and cached.

    The cache file name is the fingerprint of the weights, export settings and mobilefer/torch versions.
    A file is cached only after it passed verification against torch, with its SHA-256 in a side file;
    a cached file is used only when that checksum still matches (else it is exported again).
    """
    from mobilefer import __version__
    from mobilefer.checkpoint import atomic_write_bytes
    from mobilefer.export.onnx import DEFAULT_OPSET, export_onnx_bytes, export_spec, verify_onnx

    spec = export_spec(model, input_size=input_size)
    key = model_fingerprint(
        spec.module, spec.kind, spec.input_shape, spec.preset.to_json() if spec.preset else None,
        __version__, torch.__version__, DEFAULT_OPSET,
    )
    folder = onnx_cache_dir()
    path = folder / f"{key[:32]}.onnx"
    digest_path = folder / f"{key[:32]}.sha256"
    if path.is_file() and digest_path.is_file():
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == digest_path.read_text().strip():
            return data
        logger.warning("cached ONNX export %s does not match its checksum; exporting again", path)
    data = export_onnx_bytes(spec, dynamic_batch=True)
    verify_onnx(data, spec)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
        atomic_write_bytes(digest_path, hashlib.sha256(data).hexdigest().encode())
    except OSError as exc:  # a read-only home must not break inference
        logger.warning("could not cache the ONNX export in %s (%s)", folder, exc)
    return data
