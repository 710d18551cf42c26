"""Find the local file for a weights record: explicit path, packaged resource, cache, then download.

Every file returned has just been checked against the record's size and full SHA-256.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import os
import shutil
import tempfile
from pathlib import Path

from mobilefer.errors import InvalidInputError, WeightsNotFoundError
from mobilefer.weights.download import _check_file, _download_lock, cache_dir, download
from mobilefer.weights.registry import WeightsRecord, get_record

__all__ = ["resolve", "offline_mode"]

logger = logging.getLogger(__name__)

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def offline_mode() -> bool:
    """Whether ``MOBILEFER_OFFLINE`` forbids network access (``1``/``true``/``yes``/``on``).

    Raises:
        InvalidInputError: If the variable holds anything else than a recognised true/false word.
    """
    value = os.environ.get("MOBILEFER_OFFLINE", "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidInputError(f"MOBILEFER_OFFLINE must be 1/0 (or true/false, yes/no, on/off), got {value!r}")


def _as_record(name_or_record: str | WeightsRecord) -> WeightsRecord:
    if isinstance(name_or_record, WeightsRecord):
        return name_or_record
    if isinstance(name_or_record, str):
        return get_record(name_or_record)
    raise InvalidInputError(
        f"expected a weights name or a WeightsRecord, got {type(name_or_record).__name__}"
    )


def _explicit(path: str | os.PathLike[str], record: WeightsRecord) -> Path:
    given = Path(path).expanduser()
    where = f"download {record.url} and place it there" if record.url else "pass the right file"
    if given.is_dir():
        candidate = given / record.filename
        if not candidate.exists():
            raise WeightsNotFoundError(
                f"{record.filename} ({record.name!r}) is not in {given}; {where}, or pass path= to the file itself"
            )
    elif given.exists():
        candidate = given
    else:
        raise WeightsNotFoundError(
            f"path={str(path)!r} given for {record.name!r} does not exist; pass an existing file or a directory "
            f"holding {record.filename}"
        )
    source = (
        f"get the official file from {record.url}" if record.url else "pass the file shipped with mobilefer"
    )
    _check_file(candidate, record, f"this path was given explicitly and is never overwritten; {source}")
    logger.debug("weights %s: using explicit file %s", record.name, candidate)
    return candidate


def _packaged(record: WeightsRecord, packaged: str, cache: Path) -> Path | None:
    """The packaged resource as a verified real file, or ``None`` when the package does not hold it."""
    resource = importlib.resources.files("mobilefer")
    for part in packaged.split("/"):
        resource = resource.joinpath(part)
    if not resource.is_file():
        logger.warning("weights %s: packaged resource mobilefer/%s is missing", record.name, packaged)
        return None
    advice = "the installed mobilefer package is damaged: reinstall it, or pass path= to a good copy"
    if isinstance(resource, Path):
        _check_file(resource, record, advice)
        logger.debug("weights %s: using packaged file %s", record.name, resource)
        return resource
    # Package imported from a zip or similar: materialise the resource in the cache, verified.
    target = cache / record.filename
    if target.exists():
        _check_file(target, record, f"delete {target} and try again, or pass path=")
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with _download_lock(cache / f".{record.filename}.lock"):
        if target.exists():
            _check_file(target, record, f"delete {target} and try again, or pass path=")
            return target
        fd, tmp_name = tempfile.mkstemp(prefix=f".{record.filename}.", suffix=".part", dir=cache)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, resource.open("rb") as src:
                shutil.copyfileobj(src, out)
            _check_file(tmp, record, advice)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    return target


def resolve(
    name_or_record: str | WeightsRecord,
    path: str | os.PathLike[str] | None = None,
    *,
    offline: bool | None = None,
    url: str | None = None,
    timeout: float = 30.0,
    cache: str | os.PathLike[str] | None = None,
) -> Path:
    """Return the path of a verified local copy of the weights, downloading them if allowed.

    Resolution order:

    1. ``path`` if given: a file (verified against the record) or a directory holding
       ``record.filename``. An explicit path never falls back to anything else.
    2. ``record.packaged``: a resource shipped inside the mobilefer package.
    3. The cache directory (``cache`` or :func:`~mobilefer.weights.cache_dir`).
    4. A download into the cache (from ``url`` or ``record.url``), unless offline.

    A cached file that no longer matches its hash raises :class:`ChecksumMismatchError` instead of being
    silently replaced: the message says to delete it.

    Args:
        name_or_record: A registry name (see :func:`~mobilefer.weights.list_records`) or a record.
        path: Explicit file or directory.
        offline: Forbid network access; ``None`` reads ``MOBILEFER_OFFLINE``.
        url: Download from this http(s) URL instead of ``record.url`` (mirror).
        timeout: Socket timeout in seconds for the download.
        cache: Cache directory to use instead of :func:`~mobilefer.weights.cache_dir`.

    Raises:
        InvalidInputError: Unknown name or bad arguments.
        WeightsNotFoundError: Not found locally and offline (or no URL), or ``path`` does not exist.
        ChecksumMismatchError: A file was found but its size or SHA-256 is wrong.
        DownloadError: The download failed (network, timeout, HTTP error, truncated transfer).
    """
    record = _as_record(name_or_record)
    if path is not None:
        return _explicit(path, record)
    if offline is None:
        offline = offline_mode()
    elif not isinstance(offline, bool):
        raise InvalidInputError(f"offline must be True, False or None, got {offline!r}")
    folder = Path(cache).expanduser() if cache is not None else cache_dir()

    if record.packaged is not None:
        found = _packaged(record, record.packaged, folder)
        if found is not None:
            return found

    cached = folder / record.filename
    if cached.exists():
        _check_file(
            cached,
            record,
            f"the cached copy is damaged or was modified; delete {cached} to download it again, or pass path=",
        )
        logger.debug("weights %s: using cached file %s", record.name, cached)
        return cached

    source = url if url is not None else record.url
    if source is None:
        raise WeightsNotFoundError(
            f"{record.filename} ({record.name!r}) is not in {folder} and has no download URL; "
            f"place the file in {folder}, or pass path="
        )
    if offline:
        raise WeightsNotFoundError(
            f"{record.filename} ({record.name!r}) is not in {folder} and downloads are disabled "
            f"(offline=True or MOBILEFER_OFFLINE=1); "
            f"download {source} manually and place it in {folder}, or pass path="
        )
    return download(record, folder, url=url, timeout=timeout)
