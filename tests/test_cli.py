"""The ``mobilefer`` command line: predict (images, folders, videos), overwrite rules, errors, info."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest

from _core_helpers import GRAY48, SPEC, isolated_home, make_model, read_bgr, write_video
from mobilefer.checkpoint import save_classifier
from mobilefer.classify import DEFAULT_CLASSIFIER, FER2013_LABELS, ExpressionClassifier
from mobilefer.cli import main
from mobilefer.pipeline import Pipeline
from mobilefer.weights import list_records

REPO_ROOT = Path(__file__).resolve().parents[1]
ANCIENT_NS = 1_000_000_000  # 2001-09-09


@pytest.fixture(scope="module", autouse=True)
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with isolated_home(tmp_path_factory.mktemp("mobilefer-home")) as path:
        yield path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "fer-test.safetensors"
    save_classifier(path, make_model(0), SPEC, GRAY48)
    return path


@pytest.fixture(scope="module")
def inputs(shared_images: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with two small photos (copies of shared ones, downscaled) and a file to ignore."""
    import cv2

    folder = tmp_path_factory.mktemp("inputs")
    by_name = {p.name: p for p in shared_images}
    chosen = [by_name.get("group_2.jpg", shared_images[0]), by_name.get("group_5.jpg", shared_images[-1])]
    for i, src in enumerate(chosen):
        image = read_bgr(src)
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"photo{i}.jpg"), image)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture()
def base_args(ckpt: Path, rfb_weights: Path) -> list[str]:
    return [
        "--classifier", str(ckpt), "--detector", "ultraface-rfb-320",
        "--detector-weights", str(rfb_weights), "--backend", "torch",
    ]


def _predict(args: list[str], out: Path, base: list[str], *extra: str) -> int:
    return main(["predict", *args, "-o", str(out), *base, *extra])


def _stdout_json(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------- predict
def test_predict_image_writes_annotated_image_and_json(
    inputs: Path, tmp_path: Path, base_args: list[str], ckpt: Path, rfb_weights: Path
) -> None:
    import cv2

    src = inputs / "photo0.jpg"
    assert _predict([str(src)], tmp_path, base_args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo0.annotated.jpg", "photo0.json"]
    record = json.loads((tmp_path / "photo0.json").read_text())
    image = read_bgr(src)
    assert record["type"] == "image" and record["input"] == str(src)
    assert (record["width"], record["height"]) == (image.shape[1], image.shape[0])
    assert record["detector"] == "ultraface-rfb-320" and record["classifier"] == "fer-test"
    assert record["annotated"] == str(tmp_path / "photo0.annotated.jpg")
    # The JSON holds exactly what the Python API returns for the same photo.
    pipe = Pipeline("ultraface-rfb-320", ExpressionClassifier.from_checkpoint(ckpt), "torch", detector_weights=rfb_weights)
    expected = [r.to_dict() for r in pipe.predict(image)]
    assert len(record["faces"]) == len(expected) >= 1
    for got, exp in zip(record["faces"], expected, strict=True):
        assert got["label"] == exp["label"] and list(got["probs"]) == list(FER2013_LABELS)
        assert np.allclose(got["box"], exp["box"], atol=1e-6)
    annotated = cv2.imread(str(tmp_path / "photo0.annotated.jpg"))
    assert annotated is not None and annotated.shape == image.shape
    assert float(np.mean(np.abs(annotated.astype(int) - image.astype(int)))) > 0.05  # boxes were drawn


def test_json_flag_prints_one_object_per_input(
    inputs: Path, tmp_path: Path, base_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    sources = [inputs / "photo0.jpg", inputs / "photo1.jpg"]
    assert _predict([str(s) for s in sources], tmp_path, base_args, "--json") == 0
    printed = _stdout_json(capsys.readouterr().out)
    assert [p["input"] for p in printed] == [str(s) for s in sources]
    for p, s in zip(printed, sources, strict=True):
        assert p == json.loads((tmp_path / f"{s.stem}.json").read_text())


def test_folder_input(inputs: Path, tmp_path: Path, base_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert _predict([str(inputs)], tmp_path, base_args, "--json") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "photo0.annotated.jpg", "photo0.json", "photo1.annotated.jpg", "photo1.json",
    ]
    printed = _stdout_json(capsys.readouterr().out)
    assert [Path(str(p["input"])).name for p in printed] == ["photo0.jpg", "photo1.jpg"]  # notes.txt skipped


def test_video_input(inputs: Path, tmp_path: Path, base_args: list[str]) -> None:
    import cv2

    image = cv2.resize(read_bgr(inputs / "photo0.jpg"), (320, 240), interpolation=cv2.INTER_AREA)
    clip = write_video(tmp_path, "clip", [np.roll(image, i % 2, axis=0) for i in range(4)])
    out = tmp_path / "out"
    assert _predict([str(clip)], out, base_args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip.annotated.mp4", "clip.json"]
    record = json.loads((out / "clip.json").read_text())
    assert record["type"] == "video" and record["input"] == str(clip)
    assert [f["frame_index"] for f in record["frames"]] == [0, 1, 2, 3]
    assert all(f["faces"] for f in record["frames"])
    ids = [{face["track_id"] for face in f["faces"]} for f in record["frames"]]
    assert all(i == ids[0] for i in ids)  # still scene: the smoothing tracker keeps ids
    capture = cv2.VideoCapture(str(out / "clip.annotated.mp4"))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert len(frames) == 4 and frames[0].shape == (240, 320, 3)
    assert (out / "clip.annotated.mp4").stat().st_mode & 0o777 == 0o644  # an ordinary file, like the JSON


def test_video_without_decodable_frames_writes_nothing(
    tmp_path: Path, base_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    import cv2

    empty = tmp_path / "empty.avi"  # an AVI container that OpenCV opens, with no frame in it
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (64, 48))
    writer.release()
    capture = cv2.VideoCapture(str(empty))
    assert capture.isOpened() and not capture.read()[0]
    capture.release()
    out = tmp_path / "out"
    assert _predict([str(empty)], out, base_args) == 1
    assert "no frame could be decoded" in capsys.readouterr().err
    assert not out.exists() or list(out.iterdir()) == []


def test_existing_outputs_need_force(
    inputs: Path, tmp_path: Path, base_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    src = inputs / "photo1.jpg"
    assert _predict([str(src)], tmp_path, base_args) == 0
    files = sorted(tmp_path.iterdir())
    for f in files:
        os.utime(f, ns=(ANCIENT_NS, ANCIENT_NS))
    before = {f: f.read_bytes() for f in files}
    capsys.readouterr()
    assert _predict([str(src)], tmp_path, base_args) == 1
    err = capsys.readouterr().err
    assert "--force" in err and "exists" in err
    for f in files:
        assert f.read_bytes() == before[f] and f.stat().st_mtime_ns == ANCIENT_NS
    # Outputs of another input existing also blocks the whole run: nothing new is written.
    assert _predict([str(inputs / "photo0.jpg"), str(src)], tmp_path, base_args) == 1
    assert sorted(tmp_path.iterdir()) == files
    assert _predict([str(src)], tmp_path, base_args, "--force") == 0
    for f in files:
        assert f.stat().st_mtime_ns != ANCIENT_NS
    assert json.loads((tmp_path / "photo1.json").read_bytes()) == json.loads(before[tmp_path / "photo1.json"])
    assert sorted(tmp_path.iterdir()) == files  # no temp files left behind


def test_jobs_two_gives_the_same_json(inputs: Path, tmp_path: Path, base_args: list[str]) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert _predict([str(inputs)], one, base_args, "--jobs", "1") == 0
    assert _predict([str(inputs)], two, base_args, "--jobs", "2") == 0
    for name in ("photo0.json", "photo1.json"):
        a, b = json.loads((one / name).read_text()), json.loads((two / name).read_text())
        assert a.pop("annotated") != b.pop("annotated")
        assert a == b


def test_onnxruntime_backend_matches_torch(inputs: Path, tmp_path: Path, base_args: list[str]) -> None:
    torch_args = base_args
    ort_args = [a if a != "torch" else "onnxruntime" for a in base_args]
    assert _predict([str(inputs / "photo0.jpg")], tmp_path / "t", torch_args) == 0
    assert _predict([str(inputs / "photo0.jpg")], tmp_path / "o", ort_args) == 0
    t = json.loads((tmp_path / "t" / "photo0.json").read_text())["faces"]
    o = json.loads((tmp_path / "o" / "photo0.json").read_text())["faces"]
    assert len(t) == len(o) >= 1
    for a, b in zip(t, o, strict=True):
        assert a["label"] == b["label"]
        assert np.allclose(a["box"], b["box"], atol=1e-3)
        assert np.allclose(list(a["probs"].values()), list(b["probs"].values()), atol=1e-4)


# ---------------------------------------------------------------------------------------- errors
def test_missing_input_exits_2(tmp_path: Path, base_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert _predict([str(tmp_path / "nope.jpg")], out, base_args) == 2
    err = capsys.readouterr().err
    assert "nope.jpg" in err and "no such file" in err
    assert not out.exists()


def test_corrupt_image_is_reported_and_others_still_processed(
    inputs: Path, tmp_path: Path, base_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    out = tmp_path / "out"
    code = _predict([str(bad), str(inputs / "photo1.jpg")], out, base_args, "--json")
    captured = capsys.readouterr()
    assert code == 1
    assert "broken.jpg" in captured.err and "decode" in captured.err
    assert [Path(str(p["input"])).name for p in _stdout_json(captured.out)] == ["photo1.jpg"]
    assert sorted(p.name for p in out.iterdir()) == ["photo1.annotated.jpg", "photo1.json"]


@pytest.mark.parametrize(
    ("setup", "extra", "needle"),
    [
        ("txt", [], "unsupported file type"),
        ("same-stem", [], "would both write"),
        ("output-is-file", [], "not a folder"),
        ("empty-folder", [], "holds no images"),
        ("ok", ["--jobs", "0"], "--jobs"),
    ],
)
def test_usage_errors_exit_2(
    setup: str, extra: list[str], needle: str, inputs: Path, tmp_path: Path, base_args: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    sources = [str(inputs / "photo0.jpg")]
    if setup == "txt":
        sources = [str(inputs / "notes.txt")]
    elif setup == "same-stem":
        (tmp_path / "photo0.png").write_bytes((inputs / "photo0.jpg").read_bytes())
        sources.append(str(tmp_path / "photo0.png"))
    elif setup == "output-is-file":
        out.write_text("x")
    elif setup == "empty-folder":
        (tmp_path / "empty").mkdir()
        sources = [str(tmp_path / "empty")]
    assert _predict(sources, out, base_args, *extra) == 2
    assert needle in capsys.readouterr().err


def test_bad_flag_values_are_argparse_errors(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["predict", "x.jpg", "--backend", "tensorrt"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main([])


def test_without_classifier_uses_the_shipped_model(inputs: Path, tmp_path: Path, rfb_weights: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    args = ["predict", str(inputs / "photo1.jpg"), "-o", str(tmp_path), "--detector-weights", str(rfb_weights),
            "--detector", "ultraface-rfb-320", "--backend", "torch"]
    if DEFAULT_CLASSIFIER in {r.name for r in list_records()}:
        assert main(args) == 0
    else:
        assert main(args) == 1
        assert "ships no default expression classifier" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- info
def test_info_json_lists_versions_cache_and_weights(
    home: Path, rfb_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mobilefer

    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["versions"]["mobilefer"] == mobilefer.__version__
    for module in ("torch", "onnxruntime", "cv2", "numpy", "python"):
        assert info["versions"][module]
    assert info["cache_dir"] == str(home / "weights")
    names = {r.name for r in list_records()}
    assert set(info["weights"]) == names
    assert all(w["status"] in ("ok", "unavailable") for w in info["weights"].values())
    assert info["weights"]["ultraface-rfb-320"]["status"] == "unavailable"  # nothing cached, offline
    (home / "weights").mkdir(exist_ok=True)
    shutil.copy(rfb_weights, home / "weights" / "version-RFB-320.pth")
    try:
        assert main(["info", "--json"]) == 0
        rfb = json.loads(capsys.readouterr().out)["weights"]["ultraface-rfb-320"]
        assert rfb == {"status": "ok", "path": str(home / "weights" / "version-RFB-320.pth")}
        assert main(["info"]) == 0
        text = capsys.readouterr().out
        assert "weights:" in text and "ultraface-rfb-320" in text and str(home / "weights") in text
    finally:
        (home / "weights" / "version-RFB-320.pth").unlink()


# ---------------------------------------------------------------------------------------- entry point
def test_console_script_is_declared() -> None:
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts.get("mobilefer") == "mobilefer.cli:main"


def test_module_entry_point_in_a_subprocess(inputs: Path, tmp_path: Path, base_args: list[str], home: Path) -> None:
    env = dict(os.environ, MOBILEFER_HOME=str(home), MOBILEFER_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "mobilefer.cli", "predict", str(inputs / "photo1.jpg"), "-o", str(tmp_path),
           *base_args, "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    (record,) = _stdout_json(done.stdout)
    assert record["input"] == str(inputs / "photo1.jpg") and record["faces"]
    assert (tmp_path / "photo1.annotated.jpg").is_file()


def test_cli_help_and_config_helpers_do_not_import_heavy_modules() -> None:
    """`mobilefer --help` and `mobilefer.train.load_config` stay cheap: no torch, onnx or timm import."""
    code = (
        "import sys, contextlib, io\n"
        "from mobilefer.cli import build_parser\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        "        build_parser().parse_args(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'train' in out.getvalue() and 'export' in out.getvalue(), out.getvalue()\n"
        "from mobilefer.train import TrainConfig, load_config\n"
        "bad = [m for m in ('torch', 'onnx', 'onnxruntime', 'timm') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "import mobilefer.train as package\n"
        "assert 'load_config' in dir(package) and not hasattr(package, 'no_such_name')\n"
        "from mobilefer.train import train\n"
        "assert 'torch' in sys.modules and callable(train) and package.train is train\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
