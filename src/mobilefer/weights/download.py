"""Hashing, verification and safe downloading of weight files.

Downloads stream into a temporary file unique to the process (``.<filename>.<random>.part``) in the
destination directory while hashing; the file is moved to its final name with :func:`os.replace` only
after its size and full SHA-256 match the record, so no reader ever sees a partial or wrong file under
the final name. On POSIX an advisory ``fcntl`` lock (``.<filename>.lock``, removed afterwards)
serialises concurrent downloads of the same file, so a second process waits and then reuses the
first one's file instead of fetching it again. Only :mod:`urllib` is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import math
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from mobilefer.errors import (
    ChecksumMismatchError,
    DownloadError,
    InvalidInputError,
    WeightsError,
    WeightsNotFoundError,
)
from mobilefer.weights.registry import WeightsRecord, check_url

__all__ = ["cache_dir", "sha256_file", "verify_file", "download"]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16
_USER_AGENT = "mobilefer-weights/0.1 (+urllib)"


def cache_dir() -> Path:
    """Directory holding downloaded weights: ``$MOBILEFER_HOME/weights``.

    ``MOBILEFER_HOME`` defaults to ``~/.cache/mobilefer``. The directory is not created here.
    """
    home = os.environ.get("MOBILEFER_HOME", "").strip()
    base = Path(home).expanduser() if home else Path("~/.cache/mobilefer").expanduser()
    return base / "weights"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Full SHA-256 hex digest of a file, read in chunks.

    Raises:
        WeightsNotFoundError: If ``path`` is not a readable file.
    """
    file = Path(path)
    digest = hashlib.sha256()
    try:
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        raise WeightsNotFoundError(f"cannot read weights file {file}: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def _check_file(path: Path, record: WeightsRecord, advice: str) -> None:
    """Raise :class:`ChecksumMismatchError` (with ``advice`` appended) unless ``path`` matches ``record``."""
    try:
        actual_size = path.stat().st_size
    except OSError as exc:
        raise WeightsNotFoundError(
            f"weights file {path} for {record.name!r} cannot be read ({exc.strerror or exc}); {advice}"
        ) from exc
    if not path.is_file():
        raise WeightsNotFoundError(f"{path} is not a file (weights {record.name!r}); {advice}")
    if actual_size != record.size:
        kind = "truncated" if actual_size < record.size else "too large"
        raise ChecksumMismatchError(
            f"{path} is {actual_size} bytes but {record.filename} ({record.name!r}) is {record.size} bytes "
            f"({kind}: incomplete or not the official file); {advice}"
        )
    actual = sha256_file(path)
    if actual != record.sha256:
        raise ChecksumMismatchError(
            f"{path} has SHA-256 {actual} but {record.filename} ({record.name!r}) must have {record.sha256} "
            f"(corrupted, tampered with, or a different file); {advice}"
        )


def verify_file(path: str | os.PathLike[str], record: WeightsRecord) -> None:
    """Check that ``path`` is exactly the file ``record`` describes (size, then full SHA-256).

    Raises:
        WeightsNotFoundError: If ``path`` does not exist or is not a readable file.
        ChecksumMismatchError: If the size or the hash differs.
    """
    if not isinstance(record, WeightsRecord):
        raise InvalidInputError(f"record must be a WeightsRecord, got {type(record).__name__}")
    advice = f"get the official file from {record.url}" if record.url else "reinstall mobilefer"
    _check_file(Path(path), record, advice)


def _check_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout):
        raise InvalidInputError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if timeout <= 0:
        raise InvalidInputError(f"timeout must be > 0 seconds, got {timeout!r}")
    return float(timeout)


@contextlib.contextmanager
def _download_lock(lock_path: Path) -> Iterator[None]:
    """Advisory exclusive lock on POSIX (no-op elsewhere); the lock file is removed on release.

    Removing the file may let a late process lock a fresh inode while an earlier one still waits on the
    old one; that only costs a duplicate download, never a wrong file, because installation is
    hash-checked and atomic.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # read-only directory etc.: the write that follows reports the real problem
        logger.debug("no download lock at %s (%s); continuing without it", lock_path, exc)
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                lock_path.unlink()
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def download(
    record: WeightsRecord,
    dest_dir: str | os.PathLike[str],
    *,
    url: str | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download ``record`` into ``dest_dir`` (created if needed) and return the verified file's path.

    The bytes stream into a temporary file in ``dest_dir`` while being hashed; the file gets its final
    name ``dest_dir / record.filename`` only when its size and SHA-256 match. If a valid file is
    already there (for instance fetched meanwhile by another process) it is returned without network
    access. An existing file that does *not* match is never overwritten.

    Args:
        record: What to fetch.
        dest_dir: Target directory.
        url: Fetch from this http(s) URL instead of ``record.url`` (mirrors, tests).
        timeout: Socket timeout in seconds for connecting and for each read.

    Raises:
        DownloadError: Network unreachable, timeout, HTTP error, truncated transfer, unwritable directory.
        ChecksumMismatchError: The server sent a different file (size or hash), or a non-matching file
            already sits at the destination.
        InvalidInputError: Bad arguments.
    """
    if not isinstance(record, WeightsRecord):
        raise InvalidInputError(f"record must be a WeightsRecord, got {type(record).__name__}")
    source = url if url is not None else record.url
    if source is None:
        raise WeightsNotFoundError(
            f"{record.filename} ({record.name!r}) has no download URL; pass url= or path= to a copy of the file"
        )
    check_url(source, "url")
    timeout = _check_timeout(timeout)
    folder = Path(dest_dir).expanduser()
    target = folder / record.filename
    manual = f"download {source} manually and place it in {folder}, or pass path="
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot create weights directory {folder} ({exc.strerror or exc}); set MOBILEFER_HOME to a "
            f"writable directory, or {manual}"
        ) from exc

    with _download_lock(folder / f".{record.filename}.lock"):
        if target.exists():
            _check_file(target, record, f"delete {target} to download it again, or pass path=")
            logger.debug("weights %s already present at %s", record.name, target)
            return target
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{record.filename}.", suffix=".part", dir=folder)
        except OSError as exc:
            raise DownloadError(
                f"cannot write to weights directory {folder} ({exc.strerror or exc}); set MOBILEFER_HOME to a "
                f"writable directory, or {manual}"
            ) from exc
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                digest = _fetch(source, out, record, timeout, manual)
                out.flush()
                os.fsync(out.fileno())
            if digest != record.sha256:
                raise ChecksumMismatchError(
                    f"{source} sent {record.filename} with SHA-256 {digest}, expected {record.sha256} "
                    f"(wrong or altered file; nothing was saved); {manual} after checking it"
                )
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    logger.info("downloaded %s (%d bytes) to %s", record.name, record.size, target)
    return target


def _fetch(source: str, out: IO[bytes], record: WeightsRecord, timeout: float, manual: str) -> str:
    """Stream ``source`` into the binary file ``out``; return the SHA-256 hex digest of what was written."""
    logger.info("downloading %s from %s", record.name, source)
    request = urllib.request.Request(
        source, headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    )
    digest = hashlib.sha256()
    received = 0
    declared: int | None = None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = getattr(response, "status", 200)
            if status != 200:
                raise DownloadError(f"{source} answered HTTP {status} for {record.filename}; {manual}")
            declared_raw = response.headers.get("Content-Length")
            if declared_raw is not None:
                try:
                    declared = int(declared_raw)
                except ValueError:
                    declared = None
            if declared is not None and declared != record.size:
                raise ChecksumMismatchError(
                    f"{source} announces {declared} bytes for {record.filename} but the official file has "
                    f"{record.size} bytes (wrong URL or altered file; nothing was saved); {manual}"
                )
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                received += len(chunk)
                if received > record.size:
                    raise ChecksumMismatchError(
                        f"{source} sent more than the {record.size} bytes of {record.filename} "
                        f"(wrong or altered file; nothing was saved); {manual}"
                    )
                digest.update(chunk)
                out.write(chunk)
    except WeightsError:
        raise
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"{source} answered HTTP {exc.code} {exc.reason} for {record.filename}; {manual}"
        ) from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"cannot reach {source} for {record.filename} ({exc.reason}); {manual}") from exc
    except TimeoutError as exc:
        raise DownloadError(
            f"download of {record.filename} from {source} timed out after {timeout:g} s; retry with a larger "
            f"timeout, or {manual}"
        ) from exc
    except (http.client.HTTPException, OSError) as exc:
        raise DownloadError(
            f"download of {record.filename} from {source} failed after {received} bytes "
            f"({type(exc).__name__}: {exc}); {manual}"
        ) from exc
    if declared is not None and received < declared:
        raise DownloadError(
            f"download of {record.filename} from {source} was truncated: got {received} of {declared} bytes "
            f"(nothing was saved); retry, or {manual}"
        )
    if received != record.size:
        raise ChecksumMismatchError(
            f"{source} sent {received} bytes for {record.filename} but the official file has {record.size} bytes "
            f"(truncated or altered; nothing was saved); retry, or {manual}"
        )
    return digest.hexdigest()
