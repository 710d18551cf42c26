"""Checks on untrusted files made before a library parses them."""

from __future__ import annotations

import zipfile
from pathlib import Path


def declared_zip_size(path: Path) -> int | None:
    """Total uncompressed size the records of a zip file declare, or ``None`` when it is not a zip.

    ``torch.load`` allocates each record's declared size, so a small file with a deflated record can make
    it allocate gigabytes: callers compare this figure with what the file may hold before loading it.

    Raises:
        zipfile.BadZipFile, OSError, ValueError: For a damaged zip directory.
    """
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        return sum(info.file_size for info in archive.infolist())
