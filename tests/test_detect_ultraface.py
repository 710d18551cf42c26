"""UltraFace: priors, decoding, NMS, weights loading, and parity with the official ONNX models."""

from __future__ import annotations

import dataclasses
import inspect
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from conftest import shared_file
from mobilefer.detect import (
    DETECTOR_NAMES,
    ULTRAFACE,
    Detection,
    Detector,
    HaarDetector,
    UltraFaceDecoded,
    UltraFaceDetector,
    UltraFaceNet,
    create_detector,
    decode_boxes,
    generate_priors,
    load_ultraface_net,
    select_boxes,
)
from mobilefer.errors import (
    InvalidImageError,
    InvalidInputError,
    ModelFormatError,
    WeightsNotFoundError,
)
from mobilefer.preset import Preset

# Official table (vision/ssd/config/fd_config.py): input size -> feature maps ([widths], [heights]).
OFFICIAL_FEATURE_MAPS = {
    128: ((128, 96), ([16, 8, 4, 2], [12, 6, 3, 2])),
    160: ((160, 120), ([20, 10, 5, 3], [15, 8, 4, 2])),
    320: ((320, 240), ([40, 20, 10, 5], [30, 15, 8, 4])),
    480: ((480, 360), ([60, 30, 15, 8], [45, 23, 12, 6])),
    640: ((640, 480), ([80, 40, 20, 10], [60, 30, 15, 8])),
}
EXPECTED_PRIORS = {128: 708, 160: 1118, 320: 4420, 480: 9984, 640: 17640}
MIN_BOXES = [[10, 16, 24], [32, 48], [64, 96], [128, 192, 256]]

SLIM_SHA256 = "cd24abce45da5dbc7cfd8167cd3d5f955382dfc9d9ae9459f0026abd3c2e38a4"


# --------------------------------------------------------------------------- reference helpers
def reference_priors(width: int) -> np.ndarray:
    """Straightforward loop version of the official prior generation, from the official table."""
    (w, h), (fws, fhs) = OFFICIAL_FEATURE_MAPS[width]
    rows = []
    for k, sides in enumerate(MIN_BOXES):
        shrink_w, shrink_h = w / fws[k], h / fhs[k]
        scale_w, scale_h = w / shrink_w, h / shrink_h
        for j in range(fhs[k]):
            for i in range(fws[k]):
                for side in sides:
                    rows.append([(i + 0.5) / scale_w, (j + 0.5) / scale_h, side / w, side / h])
    return np.clip(np.asarray(rows, dtype=np.float32), 0.0, 1.0)


def reference_decode(loc: np.ndarray, priors: np.ndarray) -> np.ndarray:
    out = np.empty_like(loc, dtype=np.float64)
    for a in range(loc.shape[0]):
        cx = loc[a, 0] * 0.1 * priors[a, 2] + priors[a, 0]
        cy = loc[a, 1] * 0.1 * priors[a, 3] + priors[a, 1]
        w = np.exp(loc[a, 2] * 0.2) * priors[a, 2]
        h = np.exp(loc[a, 3] * 0.2) * priors[a, 3]
        out[a] = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    return out


def reference_hard_nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, candidate_size: int
) -> list[int]:
    """Greedy NMS as in the official numpy post-processing (exact IoU, no epsilon)."""
    order = list(np.argsort(-scores, kind="stable")[:candidate_size])
    picked: list[int] = []
    while order:
        current = order.pop(0)
        picked.append(int(current))
        if not order:
            break
        rest = np.asarray(order)
        ious = iou_matrix(boxes[rest], boxes[current][None])[:, 0]
        order = [int(i) for i in rest[ious <= iou_threshold]]
    return picked


def official_postprocess(scores: np.ndarray, boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """The official detect_imgs_onnx.py ``predict`` (threshold 0.7, IoU 0.3, 200 candidates, top_k -1),
    re-implemented, returning (K, 5) float boxes + score before its final int32 cast."""
    probs = scores[:, 1]
    mask = probs > 0.7
    box_probs = np.concatenate([boxes[mask], probs[mask, None]], axis=1)
    order = np.argsort(box_probs[:, 4])[-200:]
    picked = []
    while len(order) > 0:
        current = order[-1]
        picked.append(current)
        if len(order) == 1:
            break
        order = order[:-1]
        rest = box_probs[order, :4]
        lt = np.maximum(rest[:, :2], box_probs[current, :2])
        rb = np.minimum(rest[:, 2:], box_probs[current, 2:4])
        inter = np.clip(rb - lt, 0, None).prod(1)
        area_rest = np.clip(rest[:, 2:] - rest[:, :2], 0, None).prod(1)
        area_cur = np.clip(box_probs[current, 2:4] - box_probs[current, :2], 0, None).prod()
        order = order[inter / (area_rest + area_cur - inter + 1e-5) <= 0.3]
    out = box_probs[picked].copy()
    out[:, [0, 2]] *= width
    out[:, [1, 3]] *= height
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def official_input(image: np.ndarray) -> np.ndarray:
    """Preprocessing exactly as the official ONNX scripts do it."""
    rgb = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), (320, 240))
    x = (rgb - np.array([127, 127, 127])) / 128
    return np.transpose(x, [2, 0, 1])[None].astype(np.float32)


def ort_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # the official graphs list initializers as inputs: harmless warnings
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return image


def random_net(arch: str, seed: int = 0) -> UltraFaceNet:
    torch.manual_seed(seed)
    net = UltraFaceNet(arch)
    with torch.no_grad():  # non-trivial BN statistics so eval-mode outputs depend on every tensor
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net.eval()


# --------------------------------------------------------------------------- config and priors
@pytest.mark.parametrize("width", sorted(EXPECTED_PRIORS))
def test_prior_counts_match_official_table_and_network(width: int) -> None:
    (w, h), (fws, fhs) = OFFICIAL_FEATURE_MAPS[width]
    assert ULTRAFACE.input_size(width) == (w, h)
    assert ULTRAFACE.feature_map_sizes(width) == tuple(zip(fws, fhs, strict=True))
    assert ULTRAFACE.num_priors(width) == EXPECTED_PRIORS[width]
    priors = ULTRAFACE.priors(width)
    assert priors.shape == (EXPECTED_PRIORS[width], 4) and priors.dtype == np.float32
    np.testing.assert_array_equal(priors, reference_priors(width))
    for arch in ("rfb", "slim"):
        net = UltraFaceNet(arch).eval()
        with torch.inference_mode():
            scores, locations = net(torch.zeros(1, 3, h, w))
        assert scores.shape == (1, EXPECTED_PRIORS[width], 2)
        assert locations.shape == (1, EXPECTED_PRIORS[width], 4)


def test_priors_are_clamped_and_official_shrinkage() -> None:
    priors = generate_priors((128, 96))
    assert priors.min() >= 0.0 and priors.max() == 1.0  # 256 / 96 > 1 is clamped
    unclamped = generate_priors((128, 96), clamp=False)
    assert unclamped.max() == pytest.approx(256 / 96)
    # Official shrinkage is size / feature map, not the nominal stride, where the division is inexact.
    assert ULTRAFACE.shrinkages(480)[1] == (16.0, 360 / 23)
    with pytest.raises(InvalidInputError, match="128, 160, 320, 480, 640"):
        ULTRAFACE.input_size(300)


def test_config_is_frozen_and_holds_official_constants() -> None:
    preset = ULTRAFACE.preset(320)
    assert (preset.mean, preset.std, preset.color) == ((127.0,) * 3, (128.0,) * 3, "rgb")
    assert (ULTRAFACE.center_variance, ULTRAFACE.size_variance) == (0.1, 0.2)
    assert ULTRAFACE.min_boxes == tuple(tuple(m) for m in MIN_BOXES)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ULTRAFACE.score_threshold = 0.5  # type: ignore[misc]


def test_preset_built_from_config() -> None:
    det = UltraFaceDetector("ultraface-slim-320", net=random_net("slim"))
    preset = det.preset
    assert isinstance(preset, Preset)
    assert preset.name == "ultraface-320"
    assert preset.input_size == (320, 240)
    assert preset.color == "rgb" and preset.interpolation == "linear"
    assert preset.mean == (127.0,) * 3 and preset.std == (128.0,) * 3
    assert preset.labels == ("background", "face")
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    np.testing.assert_array_equal(preset.preprocess([image]), official_input(image))


# --------------------------------------------------------------------------- decoding and NMS
def test_decode_matches_numpy_reference() -> None:
    rng = np.random.default_rng(1)
    priors = ULTRAFACE.priors(160)
    loc = rng.normal(0, 2, size=(priors.shape[0], 4)).astype(np.float32)
    got = decode_boxes(torch.from_numpy(loc)[None], torch.from_numpy(priors))[0].numpy()
    np.testing.assert_allclose(got, reference_decode(loc, priors), rtol=0, atol=2e-6)
    # zero regressions give the priors themselves in corner form
    zero = decode_boxes(torch.zeros(priors.shape[0], 4), torch.from_numpy(priors)).numpy()
    np.testing.assert_allclose(zero[:, :2], priors[:, :2] - priors[:, 2:] / 2, atol=1e-7)
    np.testing.assert_allclose(zero[:, 2:], priors[:, :2] + priors[:, 2:] / 2, atol=1e-7)


def test_nms_defaults_are_official() -> None:
    assert (ULTRAFACE.score_threshold, ULTRAFACE.iou_threshold) == (0.7, 0.3)
    assert (ULTRAFACE.candidate_size, ULTRAFACE.top_k) == (200, None)
    for fn in (UltraFaceDetector, create_detector, select_boxes):
        params = inspect.signature(fn).parameters
        assert params["score_threshold"].default == 0.7
        assert params["iou_threshold"].default == 0.3
        assert params["candidate_size"].default == 200
        assert params["top_k"].default is None
    det = UltraFaceDetector("ultraface-rfb-320", net=random_net("rfb"))
    assert (det.score_threshold, det.iou_threshold, det.candidate_size, det.top_k) == (0.7, 0.3, 200, None)


def test_select_boxes_threshold_iou_candidates_topk() -> None:
    # Box 1 overlaps box 0 with IoU 0.35 (> 0.3: dropped); box 2 with IoU 0.25 (kept).
    boxes = torch.tensor(
        [[0, 0, 10, 10], [0, 0, 10, 10 * 0.35], [0, 0, 10, 2.5], [20, 20, 30, 30], [40, 40, 50, 50]],
        dtype=torch.float32,
    )
    scores = torch.tensor([0.9, 0.8, 0.75, 0.7, 0.95])
    assert select_boxes(scores, boxes).tolist() == [4, 0, 2]  # 0.7 is not > 0.7
    assert select_boxes(scores, boxes, score_threshold=0.69).tolist() == [4, 0, 2, 3]
    assert select_boxes(scores, boxes, iou_threshold=0.4).tolist() == [4, 0, 1]  # 2 vs 1: IoU 0.71
    assert select_boxes(scores, boxes, candidate_size=2).tolist() == [4, 0]
    assert select_boxes(scores, boxes, top_k=1).tolist() == [4]
    assert select_boxes(torch.zeros(5), boxes).numel() == 0


def test_select_boxes_matches_greedy_reference_on_random_boxes() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        n = int(rng.integers(1, 400))
        xy = rng.uniform(0, 100, size=(n, 2))
        wh = rng.uniform(5, 40, size=(n, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
        scores = rng.permutation(np.linspace(0.71, 0.99, n)).astype(np.float32)  # distinct, all above 0.7
        got = select_boxes(torch.from_numpy(scores), torch.from_numpy(boxes)).tolist()
        assert got == reference_hard_nms(boxes, scores, 0.3, 200)


# --------------------------------------------------------------------------- networks and weights
def test_state_dict_layout_of_both_backbones() -> None:
    rfb, slim = UltraFaceNet("rfb").state_dict(), UltraFaceNet("slim").state_dict()
    assert len(rfb) == 244 and len(slim) == 184  # the official .pth files have 244 / 184 entries
    # Both share everything except stage 7 (RFB block vs separable block).
    assert {k for k in rfb if not k.startswith("base_net.7.")} == {
        k for k in slim if not k.startswith("base_net.7.")
    }
    assert sorted({k.split(".")[2] for k in rfb if k.startswith("base_net.7.")}) == [
        "ConvLinear", "branch0", "branch1", "branch2", "shortcut"
    ]  # fmt: skip
    assert tuple(slim["base_net.7.0.weight"].shape) == (64, 1, 3, 3)
    assert tuple(slim["base_net.7.3.weight"].shape) == (64, 64, 1, 1)
    expected_heads = {
        "classification_headers.0.2.weight": (6, 64, 1, 1),
        "classification_headers.1.2.weight": (4, 128, 1, 1),
        "classification_headers.2.2.weight": (4, 256, 1, 1),
        "classification_headers.3.weight": (6, 256, 3, 3),
        "regression_headers.0.2.weight": (12, 64, 1, 1),
        "regression_headers.3.weight": (12, 256, 3, 3),
        "extras.0.2.2.weight": (256, 64, 1, 1),
    }
    for sd in (rfb, slim):
        for key, shape in expected_heads.items():
            assert tuple(sd[key].shape) == shape


@pytest.mark.parametrize("arch", ["rfb", "slim"])
def test_weights_round_trip_and_errors(arch: str, tmp_path: Path) -> None:
    net = random_net(arch, seed=3)
    path = tmp_path / f"{arch}.pth"
    torch.save(net.state_dict(), path)
    loaded = load_ultraface_net(arch, path)
    x = torch.randn(1, 3, 96, 128)
    with torch.inference_mode():
        for a, b in zip(net(x), loaded(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    other = "slim" if arch == "rfb" else "rfb"
    with pytest.raises(ModelFormatError, match="does not fit"):
        load_ultraface_net(other, path)
    with pytest.raises(WeightsNotFoundError):
        load_ultraface_net(arch, tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ModelFormatError):
        load_ultraface_net(arch, junk)


def test_default_weights_come_from_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import mobilefer.weights

    path = tmp_path / "slim.pth"
    torch.save(random_net("slim").state_dict(), path)
    calls: list[str] = []

    def fake_resolve(name: str, path_arg: object = None) -> Path:
        calls.append(name)
        return path

    monkeypatch.setattr(mobilefer.weights, "resolve", fake_resolve)
    det = UltraFaceDetector("ultraface-slim-320")
    assert calls == ["ultraface-slim-320"] and det.name == "ultraface-slim-320"

    def missing(name: str, path_arg: object = None) -> Path:
        raise WeightsNotFoundError(f"no {name}")

    monkeypatch.setattr(mobilefer.weights, "resolve", missing)
    with pytest.raises(WeightsNotFoundError, match="ultraface-rfb-320"):
        create_detector("ultraface-rfb-320")


def test_detector_validation_and_factory() -> None:
    with pytest.raises(InvalidInputError, match="ultraface-rfb-320, ultraface-slim-320, haar"):
        create_detector("yolo")
    assert DETECTOR_NAMES == ("ultraface-rfb-320", "ultraface-slim-320", "haar")
    with pytest.raises(InvalidInputError):
        UltraFaceDetector("ultraface-rfb-640", net=random_net("rfb"))
    with pytest.raises(InvalidInputError):
        UltraFaceDetector("ultraface-rfb-320", net=random_net("slim"))
    for bad in ({"score_threshold": 1.5}, {"iou_threshold": 0.0}, {"candidate_size": 0}, {"top_k": 0}):
        with pytest.raises(InvalidInputError):
            UltraFaceDetector("ultraface-rfb-320", net=random_net("rfb"), **bad)
    with pytest.raises(InvalidInputError):
        UltraFaceNet("mobilenet")
    assert isinstance(create_detector("haar"), HaarDetector)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((40, 40, 3), dtype=np.float32),
        np.zeros((40, 40, 2), dtype=np.uint8),
        np.zeros((1, 40, 40, 3), dtype=np.uint8),
        np.zeros((0, 40, 3), dtype=np.uint8),
        [[0, 0], [0, 0]],
        None,
    ],
)
def test_bad_input_raises_invalid_image(bad: Any) -> None:
    det = UltraFaceDetector("ultraface-rfb-320", net=random_net("rfb"))
    with pytest.raises(InvalidImageError):
        det.detect(bad)


def test_gray_and_bgra_inputs_are_converted() -> None:
    det = UltraFaceDetector("ultraface-slim-320", net=random_net("slim"))
    rng = np.random.default_rng(4)
    bgr = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    for a, b in ((bgra, bgr), (gray, cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))):
        for x, y in zip(det.raw_outputs(a), det.raw_outputs(b), strict=True):
            np.testing.assert_array_equal(x, y)


def test_decoded_module_keeps_official_state_dict() -> None:
    net = random_net("rfb")
    wrapped = UltraFaceDecoded(net, 160)
    assert set(wrapped.state_dict()) == {f"net.{k}" for k in net.state_dict()}  # priors not persisted
    assert wrapped.priors.shape == (1118, 4)


# --------------------------------------------------------------------------- real weights and photos
@pytest.fixture(scope="module")
def rfb_detector(rfb_weights: Path) -> UltraFaceDetector:
    return UltraFaceDetector.from_file("ultraface-rfb-320", rfb_weights)


@pytest.mark.realdata
def test_official_rfb_weights_load_strictly(rfb_weights: Path) -> None:
    state = torch.load(rfb_weights, map_location="cpu", weights_only=True)
    net = UltraFaceNet("rfb")
    result = net.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.realdata
def test_rfb_raw_outputs_match_official_onnx(
    rfb_detector: UltraFaceDetector, shared_images: list[Path]
) -> None:
    raw = ort_session(shared_file("weights/ultraface/version-RFB-320_without_postprocessing.onnx"))
    full = ort_session(shared_file("weights/ultraface/version-RFB-320.onnx"))
    for path in shared_images:
        image = read_image(path)
        x = official_input(image)
        np.testing.assert_array_equal(rfb_detector.preset.preprocess([image]), x)
        with torch.inference_mode():
            scores, locations = rfb_detector.net(torch.from_numpy(x))
        ref_scores, ref_locations = raw.run(["scores", "boxes"], {"input": x})
        assert np.abs(scores.numpy() - ref_scores).max() <= 1e-4, path.name
        assert np.abs(locations.numpy() - ref_locations).max() <= 1e-4, path.name
        dec_scores, dec_boxes = rfb_detector.raw_outputs(image)
        full_scores, full_boxes = full.run(["scores", "boxes"], {"input": x})
        assert np.abs(dec_scores - full_scores[0]).max() <= 1e-4, path.name
        assert np.abs(dec_boxes - full_boxes[0]).max() <= 1e-4, path.name


@pytest.mark.realdata
def test_rfb_final_boxes_match_official_postprocessing(
    rfb_detector: UltraFaceDetector, shared_images: list[Path]
) -> None:
    full = ort_session(shared_file("weights/ultraface/version-RFB-320.onnx"))
    total = 0
    for path in shared_images:
        image = read_image(path)
        height, width = image.shape[:2]
        scores, boxes = full.run(["scores", "boxes"], {"input": official_input(image)})
        reference = official_postprocess(scores[0], boxes[0], width, height)
        detections = rfb_detector.detect(image)
        assert len(detections) == len(reference), path.name
        ours = np.array([d.box for d in detections]).reshape(-1, 4)
        pairwise = np.diag(iou_matrix(ours, reference[:, :4]))
        assert pairwise.min() >= 0.99, (path.name, pairwise.min())
        np.testing.assert_allclose([d.score for d in detections], reference[:, 4], atol=1e-4)
        # The official script finally truncates boxes to int32 (for drawing): within one pixel of ours.
        assert np.abs(ours.astype(np.int32) - reference[:, :4].astype(np.int32)).max(initial=0) <= 1
        total += len(detections)
    assert total > 0


@pytest.mark.realdata
def test_rfb_detections_are_sorted_and_typed(
    rfb_detector: UltraFaceDetector, shared_images: list[Path]
) -> None:
    assert isinstance(rfb_detector, Detector) and rfb_detector.name == "ultraface-rfb-320"
    image = read_image(shared_images[0])
    detections = rfb_detector.detect(image)
    assert len(detections) >= 2
    assert all(isinstance(d, Detection) and isinstance(d.score, float) for d in detections)
    assert all(all(isinstance(v, float) for v in d.box) for d in detections)
    scores = [d.score for d in detections]
    assert scores == sorted(scores, reverse=True) and min(scores) > 0.7
    assert all(d.box[2] > d.box[0] and d.box[3] > d.box[1] for d in detections)
    limited = UltraFaceDetector("ultraface-rfb-320", net=rfb_detector.net, top_k=2).detect(image)
    assert limited == detections[:2]


# --------------------------------------------------------------------------- slim-320 official weights
def _slim_weights() -> Path:
    """``MOBILEFER_SLIM_WEIGHTS`` if set, else ``../shared/weights/ultraface/version-slim-320.pth``.

    Like every ../shared file, a missing one skips locally and fails under CI.
    """
    env = os.environ.get("MOBILEFER_SLIM_WEIGHTS")
    if not env:
        return shared_file("weights/ultraface/version-slim-320.pth")
    path = Path(env)
    if not path.is_file():
        pytest.fail(f"MOBILEFER_SLIM_WEIGHTS={env} is not a file (the official file has SHA-256 {SLIM_SHA256})")
    return path


@pytest.mark.realdata
def test_official_slim_weights_strict_load_and_onnx_parity(shared_images: list[Path]) -> None:
    import hashlib

    path = _slim_weights()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SLIM_SHA256
    state = torch.load(path, map_location="cpu", weights_only=True)
    result = UltraFaceNet("slim").load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    detector = UltraFaceDetector.from_file("ultraface-slim-320", path)
    raw_onnx = path.with_name("version-slim-320_without_postprocessing.onnx")
    full_onnx = path.with_name("version-slim-320.onnx")
    if not (raw_onnx.is_file() and full_onnx.is_file()):
        pytest.skip(f"official slim ONNX files not next to {path}; strict load checked only")
    raw, full = ort_session(raw_onnx), ort_session(full_onnx)
    for image_path in shared_images:
        image = read_image(image_path)
        x = official_input(image)
        with torch.inference_mode():
            scores, locations = detector.net(torch.from_numpy(x))
        ref_scores, ref_locations = raw.run(["scores", "boxes"], {"input": x})
        assert np.abs(scores.numpy() - ref_scores).max() <= 1e-4
        assert np.abs(locations.numpy() - ref_locations).max() <= 1e-4
        full_scores, full_boxes = full.run(["scores", "boxes"], {"input": x})
        reference = official_postprocess(full_scores[0], full_boxes[0], image.shape[1], image.shape[0])
        detections = detector.detect(image)
        assert len(detections) == len(reference), image_path.name
        ours = np.array([d.box for d in detections]).reshape(-1, 4)
        assert np.diag(iou_matrix(ours, reference[:, :4])).min(initial=1.0) >= 0.99
