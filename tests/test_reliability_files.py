"""Reliability of everything that reads a file: configs, images and videos, model and weight files.

Damaged, hostile or absurd files must give one of mobilefer's own errors (never a numpy/torch/OpenCV/
onnxruntime exception, a crash, or an executed pickle), and files whose headers announce absurd sizes
are refused *before* anything that large is allocated (checked with tracemalloc for Python/numpy
memory and, for native allocations, with the peak RSS of a fresh subprocess).
"""

from __future__ import annotations

import builtins
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from _core_helpers import GRAY48, SPEC, isolated_home, make_classifier, make_model
from mobilefer.checkpoint import load_classifier, save_classifier
from mobilefer.cli import main as cli_main
from mobilefer.detect import UltraFaceDetector, create_detector
from mobilefer.detect.ultraface import load_ultraface_net
from mobilefer.errors import (
    ChecksumMismatchError,
    DataError,
    InvalidConfigError,
    InvalidInputError,
    MobileferError,
    ModelFormatError,
    WeightsError,
)
from mobilefer.export.tnn import read_tnn, to_tnn
from mobilefer.pipeline import Pipeline
from mobilefer.runtime import make_session
from mobilefer.train.config import TrainConfig, load_config

REPO = Path(__file__).resolve().parents[1]
def fuzz(examples: int) -> settings:
    """Deterministic hypothesis settings for ``examples`` cases (CI runs the same cases every time)."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module", autouse=True)
def _home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with isolated_home(tmp_path_factory.mktemp("mobilefer-home")) as home:
        yield home


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("files")


# =============================================================================================== configs


@pytest.fixture(scope="module")
def base_config(work: Path) -> dict[str, Any]:
    """A valid config (tiny synthetic npz data) as a raw mapping."""
    images = np.random.default_rng(0).integers(0, 255, (8, 12, 12), dtype=np.uint8)
    np.savez(work / "train.npz", images=images, labels=np.arange(8) % 2, classes=np.array(["a", "b"]))
    return {
        "data": {"format": "fer2013_npz", "train": str(work / "train.npz"), "image_size": 12},
        "model": {"name": "mobilenet_v2", "width_mult": 0.35},
        "optim": {"lr": 0.01},
        "schedule": {"epochs": 2},
        "train": {"name": "fuzz", "batch_size": 4},
    }


def _load_or_refuse(path: Path, overrides: list[str] | None = None) -> TrainConfig | None:
    """``load_config``: a TrainConfig or an InvalidConfigError naming what is wrong; anything else fails."""
    try:
        return load_config(path, overrides or [])
    except InvalidConfigError as exc:
        assert str(exc).strip(), "empty error message"
        return None


def _config_bugs_present() -> bool:
    """Whether ``config_from_dict`` still crashes on ints beyond the float range or mixed-type keys."""
    from mobilefer.train.config import config_from_dict

    for raw in ({"optim": {"lr": 10**400}}, {1: 2, "y": {}}):
        try:
            config_from_dict(raw, check_paths=False)
        except InvalidConfigError:
            continue
        except (OverflowError, TypeError):
            return True
    return False


# Known bugs in mobilefer/train/config.py (reported; that module belongs to the training work): math.isfinite()
# on an int beyond the float range raises OverflowError, and sorted() on mixed-type unknown keys raises
# TypeError. These tests are expected to fail with exactly those errors until it is fixed, and then run
# normally (the condition turns False by itself).
CONFIG_BUGS = pytest.mark.xfail(
    _config_bugs_present(), reason="train/config.py: OverflowError/TypeError on odd YAML (reported)",
    raises=(OverflowError, TypeError), strict=True,
)

_SECTION_KEYS = {
    "data": ["format", "train", "val", "image_size", "color", "labels", "train_subset", "val_fraction", "num_workers"],
    "model": ["name", "width_mult", "stem_stride", "dropout", "init_checkpoint"],
    "optim": ["name", "lr", "weight_decay", "momentum", "nesterov", "label_smoothing", "grad_clip"],
    "schedule": ["epochs", "warmup_epochs", "min_lr_ratio"],
    "augment": ["hflip", "scale", "shift", "rotate", "mixup"],
    "train": ["name", "seed", "batch_size", "threads", "ema_decay", "class_balance", "max_steps_per_epoch"],
}

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # includes ints far beyond the float range
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["1e-3", "1e999", "-.inf", ".nan", "0x10", "~", "yes", "gray", "imagefolder", "sgd", "timm:"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers(), st.booleans(), st.none()), inner, max_size=3),
    ),
    max_leaves=6,
)


@st.composite
def mutated_configs(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """The valid base config with a few random edits: wrong types, unknown keys, deleted keys, odd sections."""
    raw: Any = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["set", "set", "set", "unknown key", "delete", "section", "root"]))
        section = draw(st.sampled_from(sorted(_SECTION_KEYS)))
        if not isinstance(raw, dict):
            break
        if not isinstance(raw.get(section), dict):
            raw[section] = {}
        if action == "set":
            raw[section][draw(st.sampled_from(_SECTION_KEYS[section]))] = draw(_values)
        elif action == "unknown key":
            raw[section][draw(st.one_of(st.text(max_size=8), st.integers()))] = draw(_values)
        elif action == "delete" and raw[section]:
            raw[section].pop(draw(st.sampled_from(sorted(raw[section], key=str))))
        elif action == "section":
            raw[draw(st.one_of(st.sampled_from(sorted(_SECTION_KEYS)), st.text(max_size=6), st.integers()))] = draw(_values)
        elif action == "root":
            raw = draw(_values)
    return raw


@CONFIG_BUGS
def test_config_fuzz_only_invalid_config_error(work: Path, base_config: dict[str, Any]) -> None:
    path = work / "fuzz.yaml"
    path.write_text(yaml.safe_dump(base_config))
    assert isinstance(load_config(path), TrainConfig)  # the base really is valid
    outcomes = {"valid": 0, "refused": 0}

    @fuzz(300)
    @given(raw=mutated_configs(base_config))
    def case(raw: Any) -> None:
        path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
        outcomes["valid" if _load_or_refuse(path) is not None else "refused"] += 1

    case()
    assert outcomes["valid"] >= 5 and outcomes["refused"] >= 100, outcomes


@fuzz(200)
@given(document=st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_random_yaml_documents_are_refused(tmp_path: Path, document: str | bytes) -> None:
    path = tmp_path / "random.yaml"
    if isinstance(document, bytes):
        path.write_bytes(document)
    else:
        path.write_text(document, encoding="utf-8", errors="surrogatepass")
    # No random document names an existing training file, so none can be valid.
    assert _load_or_refuse(path) is None


@fuzz(200)
@given(overrides=st.lists(st.one_of(st.text(max_size=20), st.builds(
    lambda s, k, v: f"{s}.{k}={v}", st.sampled_from(sorted(_SECTION_KEYS)), st.text(max_size=8), st.text(max_size=8)
)), max_size=3))
def test_random_overrides_are_applied_or_refused(work: Path, base_config: dict[str, Any], overrides: list[str]) -> None:
    path = work / "overrides.yaml"
    path.write_text(yaml.safe_dump(base_config))
    _load_or_refuse(path, overrides)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("optim:\n  lr: " + "9" * 400 + "\n", id="int-beyond-float-range", marks=CONFIG_BUGS),
        pytest.param("data: {1: 2, x: 3}\n", id="mixed-key-types", marks=CONFIG_BUGS),
        pytest.param("{1: 2, y: {}}\n", id="mixed-section-types", marks=CONFIG_BUGS),
        pytest.param("data: !!python/object/apply:os.system [echo pwned]\n", id="python-tag"),
        pytest.param("a: &a [*a, *a]\n", id="recursive-alias"),
        pytest.param("- 1\n- 2\n", id="list-root"),
        pytest.param("data:\n\tfoo: 1\n", id="tab-indent"),
    ],
)
def test_named_bad_configs(work: Path, text: str) -> None:
    path = work / "named.yaml"
    path.write_text(text)
    with pytest.raises(InvalidConfigError):
        load_config(path)


def test_missing_directory_and_binary_config_files(work: Path) -> None:
    with pytest.raises(InvalidConfigError, match="not found"):
        load_config(work / "nope.yaml")
    with pytest.raises(InvalidConfigError, match="not found"):
        load_config(work)
    binary = work / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(InvalidConfigError, match="YAML"):
        load_config(binary)


# =============================================================================================== images and videos


@pytest.fixture(scope="module")
def bad_media(work: Path, shared_images: list[Path]) -> dict[str, Path]:
    """Damaged inputs for the CLI and iter_video, keyed by what is wrong with them."""
    folder = work / "media"
    folder.mkdir()
    good = shared_images[0].read_bytes()
    files: dict[str, bytes] = {
        "zero-byte.jpg": b"",
        "truncated.jpg": good[: len(good) // 3],
        "header-only.jpg": good[:200],
        "wrong-magic.jpg": b"\x00\x00" + good[2:],
        "text.png": b"this is not an image\n",
        "random.bmp": np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "zero-byte.mp4": b"",
        "random.avi": np.random.default_rng(2).integers(0, 256, 65536, dtype=np.uint8).tobytes(),
        "a-jpeg.mp4": good,
    }
    out = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        out[name] = folder / name
    (folder / "folder.mp4").mkdir()
    out["folder.mp4"] = folder / "folder.mp4"
    out["missing.mp4"] = folder / "missing.mp4"
    return out


@pytest.fixture(scope="module")
def haar_pipeline() -> Pipeline:
    return Pipeline("haar", make_classifier(0), backend="torch")


@pytest.mark.parametrize("name", ["zero-byte.mp4", "random.avi", "folder.mp4", "missing.mp4"])
def test_iter_video_refuses_bad_files_when_called(haar_pipeline: Pipeline, bad_media: dict[str, Path], name: str) -> None:
    with pytest.raises(DataError, match="video"):
        haar_pipeline.iter_video(bad_media[name])  # raised by the call itself, not by the first next()


def test_iter_video_on_files_opencv_opens_but_are_not_videos(haar_pipeline: Pipeline, bad_media: dict[str, Path]) -> None:
    # OpenCV's FFmpeg backend reads a still image as a one-frame video, and "opens" a text file named
    # .png (its image demuxer) but decodes no frame: one frame and zero frames, no error and no crash.
    frames = list(haar_pipeline.iter_video(bad_media["a-jpeg.mp4"]))
    assert [f.frame_index for f in frames] == [0] and frames[0].frame.ndim == 3
    assert list(haar_pipeline.iter_video(bad_media["text.png"])) == []


@pytest.mark.parametrize("source", [-1, -2, 2**31, 2**64])
def test_iter_video_refuses_impossible_camera_indexes(haar_pipeline: Pipeline, source: int) -> None:
    # OpenCV itself segfaults on negative indexes and raises cv2.error above int32.
    with pytest.raises(InvalidInputError, match="camera index"):
        haar_pipeline.iter_video(source)


@pytest.mark.parametrize("source", [None, b"video.mp4", 1.5, True, ["a.mp4"]])
def test_iter_video_refuses_non_sources(haar_pipeline: Pipeline, source: Any) -> None:
    with pytest.raises(InvalidInputError, match="source must be"):
        haar_pipeline.iter_video(source)


@pytest.fixture(scope="module")
def checkpoint(work: Path) -> Path:
    path = work / "clf.safetensors"
    save_classifier(path, make_model(0), SPEC, GRAY48)
    return path


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("zero-byte.jpg", 1), ("truncated.jpg", 1), ("header-only.jpg", 1), ("wrong-magic.jpg", 1), ("text.png", 1),
        ("random.bmp", 1), ("zero-byte.mp4", 1), ("random.avi", 1), ("folder.mp4", 2),
        ("missing.mp4", 2),
    ],
)
def test_cli_reports_bad_inputs_without_traceback(
    bad_media: dict[str, Path], checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, code: int
) -> None:
    out = tmp_path / "out"
    args = ["predict", str(bad_media[name]), "-o", str(out), "--detector", "haar", "--backend", "torch",
            "--classifier", str(checkpoint)]
    assert cli_main(args) == code
    err = capsys.readouterr().err
    assert err.startswith("mobilefer: error: ") and "Traceback" not in err
    assert bad_media[name].name in err  # the message names the offending file
    leftovers = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert leftovers == []  # nothing written for an input that failed, not even temp files


# =============================================================================================== native peak memory


def _peak_rss_of(code: str, tmp_path: Path) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; it fills ``report`` (a dict); returns it with peak RSS figures."""
    script = tmp_path / "probe.py"
    script.write_text(
        "import json, resource, sys\n"
        "report = {}\n"
        "def rss_mb():\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        + code
        + "\nsys.stdout.write(json.dumps(report))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _assert_refused_without_allocating(
    imports: str, call: str, good: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    """In a fresh interpreter: ``call`` (a format string taking a path literal) loads ``good``, then raises
    ModelFormatError for every file in ``files``, and peak RSS grows by under 100 MB over all of them."""
    code = (
        f"{imports}\n"
        "from mobilefer.errors import ModelFormatError\n"
        f"{call.format(repr(str(good)))}\n"
        "report['baseline'] = rss_mb()\n"
        f"for name, path in {({k: str(v) for k, v in files.items()})!r}.items():\n"
        "    try:\n"
        f"        {call.format('path')}\n"
        "        report[name] = 'loaded'\n"
        "    except ModelFormatError:\n"
        "        report[name] = 'ModelFormatError'\n"
        "    except BaseException as exc:\n"
        "        report[name] = repr(exc)[:300]\n"
        "report['peak'] = rss_mb()\n"
    )
    report = _peak_rss_of(code, tmp_path)
    outcomes = {k: v for k, v in report.items() if k not in ("baseline", "peak")}
    assert outcomes == {name: "ModelFormatError" for name in files}
    assert report["peak"] - report["baseline"] < 100, report  # MB: nothing near the sizes announced


# =============================================================================================== TNN reader


@pytest.fixture(scope="module")
def tnn_files(work: Path) -> tuple[bytes, bytes]:
    """A small real TNN model (conv, BN, ReLU, pooling, linear) written by to_tnn."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)
    ).eval()
    files = to_tnn(net, work / "tiny", input_size=16)
    return files.proto.read_bytes(), files.model.read_bytes()


_EXTREMES = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFABC0004, 1 << 30, 10000]


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` truncated, bit-flipped, with a 32-bit field overwritten by an extreme value, or spliced."""
    kind = draw(st.sampled_from(["truncate", "flip", "u32", "insert", "delete"]))
    at = draw(st.integers(0, max(0, len(data) - 1)))
    if kind == "truncate":
        return data[:at]
    if kind == "flip":
        flipped = bytearray(data)
        flipped[at] ^= 1 << draw(st.integers(0, 7))
        return bytes(flipped)
    if kind == "u32":
        out = bytearray(data.ljust(at + 4, b"\0"))
        struct.pack_into("<I", out, at, draw(st.one_of(st.sampled_from(_EXTREMES), st.integers(0, 2**32 - 1))))
        return bytes(out)
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    return data[:at] + data[at + draw(st.integers(1, 16)) :]


def test_tnn_reader_fuzz_refuses_damage_without_allocating(tnn_files: tuple[bytes, bytes], tmp_path_factory: pytest.TempPathFactory) -> None:
    proto, model = tnn_files
    folder = tmp_path_factory.mktemp("tnn-fuzz")
    read_tnn((_write(folder / "m.tnnproto", proto), _write(folder / "m.tnnmodel", model)))  # the originals load
    outcomes = {"loaded": 0, "refused": 0}
    peak = 0

    @fuzz(400)
    @given(which=st.sampled_from(["proto", "model"]), data=st.data())
    def case(which: str, data: st.DataObject) -> None:
        nonlocal peak
        new_proto = data.draw(damaged(proto)) if which == "proto" else proto
        new_model = data.draw(damaged(model)) if which == "model" else model
        paths = (_write(folder / "m.tnnproto", new_proto), _write(folder / "m.tnnmodel", new_model))
        tracemalloc.start()
        try:
            read_tnn(paths)
            outcomes["loaded"] += 1
        except (ModelFormatError, InvalidInputError):
            outcomes["refused"] += 1
        finally:
            peak = max(peak, tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()

    case()
    assert outcomes["refused"] >= 200, outcomes
    assert peak < 4 * 2**20, f"reading a damaged {len(model)}-byte model allocated {peak} bytes"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_tnn_reader_refuses_folders_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "dir.tnnproto").mkdir()
    (tmp_path / "dir.tnnmodel").mkdir()
    with pytest.raises(InvalidInputError, match="not a readable file"):
        read_tnn((tmp_path / "dir.tnnproto", tmp_path / "dir.tnnmodel"))
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_tnn(tmp_path / "missing")


# =============================================================================================== ONNX files


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    from mobilefer.export.onnx import export_onnx_bytes, export_spec

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    return export_onnx_bytes(export_spec(net, input_size=16, preset=None))


def _absurd_onnx() -> bytes:
    """A graph whose initializer claims 2**31 x 2**31 floats but holds 16 bytes."""
    from onnx import TensorProto, helper

    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2**31, 2**31], raw_data=b"\0" * 16)
    node = helper.make_node("Identity", ["w"], ["y"])
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    return bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())


def _outside_data_onnx(folder: Path) -> Path:
    """A model whose initializer reads external data from outside its folder (path traversal)."""
    from onnx import TensorProto, helper

    secret = folder / "secret.bin"
    secret.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../secret.bin"
    node = helper.make_node("Identity", ["w"], ["y"])
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [weight])
    (folder / "models").mkdir(exist_ok=True)
    path = folder / "models" / "traversal.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return path


def test_onnx_fuzz_through_make_session_and_onnx_to_tnn(onnx_bytes: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    from mobilefer.export.tnn import onnx_to_tnn_model

    folder = tmp_path_factory.mktemp("onnx-fuzz")
    make_session(onnx_bytes)  # the original loads
    outcomes = {"loaded": 0, "refused": 0}

    @fuzz(150)
    @given(data=st.data(), via_file=st.booleans())
    def case(data: st.DataObject, via_file: bool) -> None:
        blob = data.draw(damaged(onnx_bytes))
        path = _write(folder / "m.onnx", blob)
        try:
            make_session(path if via_file else blob)
            outcomes["loaded"] += 1
        except ModelFormatError:
            outcomes["refused"] += 1
        try:
            onnx_to_tnn_model(path)
        except MobileferError:
            pass

    case()
    assert outcomes["refused"] >= 30, outcomes


def test_onnx_absurd_dims_missing_files_and_traversal(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError):
        make_session(_absurd_onnx())
    for missing in (tmp_path / "nope.onnx", tmp_path):
        with pytest.raises(InvalidInputError, match="does not exist"):
            make_session(missing)
    with pytest.raises(InvalidInputError, match="ONNX bytes or a file path"):
        make_session(None)  # type: ignore[arg-type]
    traversal = _outside_data_onnx(tmp_path)
    with pytest.raises(ModelFormatError, match="outside|escapes"):
        make_session(traversal)
    from mobilefer.export.tnn import onnx_to_tnn

    with pytest.raises(ModelFormatError):
        onnx_to_tnn(traversal, tmp_path / "out" / "m")
    assert not (tmp_path / "out").exists()


# =============================================================================================== classifier checkpoints


def _with_header(data: bytes, edit: Any) -> bytes:
    """``data`` (a safetensors file) with its JSON header passed through ``edit``."""
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + size])
    edit(header)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data[8 + size :]


def _edit_spec(**changes: Any) -> Any:
    def edit(header: dict[str, Any]) -> None:
        spec = json.loads(header["__metadata__"]["model"])
        spec.update(changes)
        header["__metadata__"]["model"] = json.dumps(spec)

    return edit


def _first_tensor(header: dict[str, Any]) -> dict[str, Any]:
    tensor: dict[str, Any] = header[sorted(k for k in header if k != "__metadata__")[-1]]
    return tensor


_CHECKPOINT_DAMAGE: dict[str, Any] = {
    "absurd shape": lambda h: _first_tensor(h).update(shape=[2**20, 2**20, 2**20]),
    "absurd offsets": lambda h: _first_tensor(h).update(data_offsets=[0, 2**62]),
    "width 1e6": _edit_spec(width_mult=1e6),
    "width 64": _edit_spec(width_mult=64.0),
    "1e12 classes": _edit_spec(num_classes=10**12),
    "1e19 classes": _edit_spec(num_classes=10**19),
    "nan width": _edit_spec(width_mult=float("nan")),
    "unknown arch": _edit_spec(name="timm:does_not_exist"),
    "wrong arch": _edit_spec(name="mobilenet_v1"),
    "format tag": lambda h: h["__metadata__"].update(format="something-else"),
    "preset": lambda h: h["__metadata__"].update(preset="[1, 2]"),
    "metrics": lambda h: h["__metadata__"].update(metrics='{"acc": [1]}'),
}


def test_checkpoint_absurd_headers_are_refused_before_allocating(checkpoint: Path, tmp_path: Path) -> None:
    data = checkpoint.read_bytes()
    files = {}
    for name, edit in _CHECKPOINT_DAMAGE.items():
        files[name] = _write(tmp_path / f"{name.replace(' ', '_')}.safetensors", _with_header(data, edit))
    files["header length 2**62"] = _write(tmp_path / "len.safetensors", struct.pack("<Q", 2**62) + data[8:])
    files["truncated"] = _write(tmp_path / "trunc.safetensors", data[: len(data) // 2])
    files["empty"] = _write(tmp_path / "empty.safetensors", b"")
    files["a pickle"] = _write(tmp_path / "pickle.safetensors", pickle.dumps({"a": 1}))
    _assert_refused_without_allocating(
        "from mobilefer.checkpoint import load_classifier", "load_classifier({})", checkpoint, files, tmp_path
    )


# =============================================================================================== UltraFace .pth files


def _zip_bomb(good: bytes, path: Path, unpacked: int = 1 << 30) -> Path:
    """A torch zip file whose first data record inflates to ``unpacked`` bytes (about 1 MB on disk)."""
    source = zipfile.ZipFile(io.BytesIO(good))
    names = source.namelist()
    first = next(n for n in names if "/data/" in n)
    with zipfile.ZipFile(path, "w") as out:
        for name in names:
            if name == first:
                info = zipfile.ZipInfo(name)
                info.compress_type = zipfile.ZIP_DEFLATED
                with out.open(info, "w", force_zip64=True) as handle:
                    chunk = bytes(1 << 24)
                    for _ in range(unpacked >> 24):
                        handle.write(chunk)
            else:
                out.writestr(name, source.read(name))
    return path


def test_damaged_ultraface_files_are_refused_before_allocating(rfb_weights: Path, tmp_path: Path) -> None:
    official = rfb_weights.read_bytes()  # legacy (non-zip) torch format
    state = torch.load(rfb_weights, map_location="cpu", weights_only=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    zipped = buffer.getvalue()
    files = {
        "empty": _write(tmp_path / "empty.pth", b""),
        "random": _write(tmp_path / "random.pth", np.random.default_rng(0).bytes(4096)),
        "wrong magic": _write(tmp_path / "magic.pth", b"\x00" * 8 + official[8:]),
        "zip magic, junk": _write(tmp_path / "pkjunk.pth", b"PK\x03\x04" + bytes(1000)),
        "not a state dict": _write(tmp_path / "list.pth", _torch_bytes([1, 2, 3])),
        "tensor shape": _write(tmp_path / "shape.pth", _torch_bytes({**state, "base_net.0.0.weight": torch.zeros(2, 2)})),
        "oversized file": _write(tmp_path / "big.pth", official + bytes(8 << 20)),
        "zip bomb (1 GiB)": _zip_bomb(zipped, tmp_path / "bomb.pth"),
    }
    for cut in (10, 1000, len(official) // 2, len(official) - 1):
        files[f"legacy cut at {cut}"] = _write(tmp_path / f"legacy{cut}.pth", official[:cut])
    for cut in (100, len(zipped) // 2, len(zipped) - 30):
        files[f"zip cut at {cut}"] = _write(tmp_path / f"zip{cut}.pth", zipped[:cut])
    assert files["zip bomb (1 GiB)"].stat().st_size < 4 << 20
    _assert_refused_without_allocating(
        "from mobilefer.detect.ultraface import load_ultraface_net", "load_ultraface_net('rfb', {})", rfb_weights,
        files, tmp_path,
    )


def _torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_ultraface_bit_flips_load_or_are_refused(rfb_weights: Path, tmp_path: Path) -> None:
    """A flipped bit either changes a weight value (an explicit path is not checksummed) or is refused."""
    official = rfb_weights.read_bytes()
    rng = np.random.default_rng(0)
    outcomes = {"loaded": 0, "refused": 0}
    for offset in rng.integers(0, len(official), 60):
        flipped = bytearray(official)
        flipped[int(offset)] ^= 1 << int(rng.integers(0, 8))
        path = _write(tmp_path / "flip.pth", bytes(flipped))
        try:
            load_ultraface_net("rfb", path)
            outcomes["loaded"] += 1
        except ModelFormatError:
            outcomes["refused"] += 1
    assert outcomes["loaded"] + outcomes["refused"] == 60


# =============================================================================================== pickles that run code


class _Payload:
    """Unpickling this runs ``open(marker, 'w')``: creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (builtins.open, (self.marker, "w"))


@pytest.fixture()
def malicious(tmp_path: Path, rfb_weights: Path) -> tuple[list[Path], Path]:
    """.pth files (zip and legacy format) holding a real state dict plus a code-running object."""
    marker = tmp_path / "PWNED"
    state: dict[str, Any] = dict(torch.load(rfb_weights, map_location="cpu", weights_only=True))
    state["payload"] = _Payload(marker)
    paths = []
    for legacy in (False, True):
        path = tmp_path / f"evil-{'legacy' if legacy else 'zip'}.pth"
        torch.save(state, path, _use_new_zipfile_serialization=not legacy)
        paths.append(path)
    # The payload is live: an unrestricted unpickler runs it.
    torch.load(paths[0], map_location="cpu", weights_only=False)
    assert marker.exists()
    marker.unlink()
    return paths, marker


def test_pickled_code_is_never_run_by_weight_loaders(malicious: tuple[list[Path], Path]) -> None:
    from mobilefer.train.trainer import init_from_checkpoint

    paths, marker = malicious
    for path in paths:
        loaders = {
            "load_ultraface_net": lambda p=path: load_ultraface_net("rfb", p),
            "UltraFaceDetector(weights=)": lambda p=path: UltraFaceDetector("ultraface-rfb-320", weights=p),
            "create_detector": lambda p=path: create_detector("ultraface-rfb-320", weights=p),
            "Pipeline(detector_weights=)": lambda p=path: Pipeline(
                "ultraface-rfb-320", make_classifier(0), backend="torch", detector_weights=p
            ),
            "init_from_checkpoint": lambda p=path: init_from_checkpoint(make_model(0), p),
            "load_classifier": lambda p=path: load_classifier(p),
        }
        for name, load in loaders.items():
            with pytest.raises(MobileferError):
                load()
            assert not marker.exists(), f"{name} ran pickled code from {path.name}"


# =============================================================================================== weights through resolve


def test_tampered_or_truncated_cached_weights_are_refused_and_never_read(
    rfb_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mobilefer.weights import cache_dir

    with isolated_home(tmp_path / "home"):
        cached = cache_dir() / "version-RFB-320.pth"
        cached.parent.mkdir(parents=True)
        shutil.copyfile(rfb_weights, cached)
        detector = UltraFaceDetector("ultraface-rfb-320")  # verified copy: loads
        assert detector.name == "ultraface-rfb-320"
        reads: list[Any] = []
        real_load = torch.load
        monkeypatch.setattr(torch, "load", lambda *a, **k: reads.append(a) or real_load(*a, **k))
        good = cached.read_bytes()
        middle = bytearray(good)
        middle[len(good) // 2] ^= 0x01  # one bit inside a weight: torch would load it happily
        for damage in (bytes(middle), good[:-1], good + b"\0"):
            cached.write_bytes(damage)
            with pytest.raises(ChecksumMismatchError, match=str(cached)):
                UltraFaceDetector("ultraface-rfb-320")
            with pytest.raises(ChecksumMismatchError):
                Pipeline("ultraface-rfb-320", make_classifier(0), backend="torch")
            assert cached.read_bytes() == damage  # kept for inspection, not silently replaced
        assert reads == []  # refused on the checksum alone: never unpickled
        # 'auto' does not use the damaged file either: it falls back to Haar (and logs why).
        auto = Pipeline("auto", make_classifier(0), backend="torch")
        assert auto.detector.name == "haar"
        cached.write_bytes(good)  # every load re-hashes the file: the good copy works again
        assert UltraFaceDetector("ultraface-rfb-320").name == "ultraface-rfb-320"


def test_explicit_registry_path_is_verified(rfb_weights: Path, tmp_path: Path) -> None:
    from mobilefer.weights import resolve

    copy = _write(tmp_path / "version-RFB-320.pth", rfb_weights.read_bytes()[:-4])
    with pytest.raises(ChecksumMismatchError):
        resolve("ultraface-rfb-320", path=copy)
    with pytest.raises(WeightsError):
        resolve("ultraface-rfb-320", path=tmp_path / "missing.pth")


def test_zip_bomb_init_checkpoint_is_refused_before_allocating(tmp_path: Path) -> None:
    from mobilefer.errors import InvalidConfigError
    from mobilefer.models.factory import create_model
    from mobilefer.train.trainer import init_from_checkpoint

    model = create_model("mobilenet_v2", 7, 1, width_mult=0.35)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    bomb = _zip_bomb(buffer.getvalue(), tmp_path / "bomb.pth", unpacked=256 << 20)
    assert bomb.stat().st_size < 4 << 20
    with pytest.raises(InvalidConfigError, match=r"model.init_checkpoint: .*would unpack to \d+ bytes"):
        init_from_checkpoint(model, bomb)
    # The real file (records stored, not deflated) still loads.
    (tmp_path / "good.pth").write_bytes(buffer.getvalue())
    init_from_checkpoint(model, tmp_path / "good.pth")
