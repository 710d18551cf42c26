"""Shared fixtures: paths into ../shared (fail, not skip, under CI when missing)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOBILEFER_SHARED", REPO_ROOT.parent / "shared"))


def shared_file(relative: str) -> Path:
    """Path of a file under ../shared; skips locally, fails under CI, when it is missing."""
    path = SHARED / relative
    if not path.exists():
        message = f"{path} is missing (tests read ../shared beside the repository root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return shared_file(".")


@pytest.fixture(scope="session")
def shared_images() -> list[Path]:
    folder = shared_file("images")
    images = sorted(folder.glob("*.jpg"))
    if not images:
        pytest.fail(f"no photos in {folder}")
    return images


@pytest.fixture(scope="session")
def rfb_weights() -> Path:
    return shared_file("weights/ultraface/version-RFB-320.pth")


@pytest.fixture(scope="session")
def slim_weights() -> Path:
    return shared_file("weights/ultraface/version-slim-320.pth")


@pytest.fixture(scope="session")
def fer_val_npz() -> Path:
    return shared_file("data/fer2013/fer2013_val.npz")


@pytest.fixture(scope="session")
def fer_train_npz() -> Path:
    return shared_file("data/fer2013/fer2013_train.npz")
