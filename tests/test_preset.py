"""Preset and CropRule: validation, derived constants, serialisation, preprocessing and crop geometry."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mobilefer.errors import InvalidImageError, InvalidInputError
from mobilefer.preset import CropRule, Preset

LABELS = ("a", "b", "c")
RGB_MEAN = (123.675, 116.28, 103.53)
RGB_STD = (58.395, 57.12, 57.375)


def _rgb(**kw: object) -> Preset:
    args: dict[str, object] = {
        "name": "rgb32",
        "input_size": (32, 24),
        "color": "rgb",
        "mean": RGB_MEAN,
        "std": RGB_STD,
        "labels": LABELS,
    }
    args.update(kw)
    return Preset(**args)  # type: ignore[arg-type]


def _image(h: int, w: int, c: int | None = 3, seed: int = 0) -> np.ndarray:
    shape = (h, w) if c is None else (h, w, c)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# ---------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kw",
    [
        {"name": ""},
        {"name": 3},
        {"input_size": (0, 24)},
        {"input_size": (32,)},
        {"input_size": (32.0, 24)},
        {"input_size": (True, 24)},
        {"input_size": 32},
        {"input_size": "32x24"},
        {"color": "hsv"},
        {"mean": (1.0, 2.0)},
        {"std": (1.0,)},
        {"mean": 127.0},
        {"mean": ("a", "b", "c")},
        {"mean": (1.0, float("nan"), 1.0)},
        {"std": (1.0, 0.0, 1.0)},
        {"std": (1.0, -2.0, 1.0)},
        {"std": (1.0, float("inf"), 1.0)},
        {"interpolation": "cubic"},
        {"crop_rules": (("default", CropRule()), ("default", CropRule(margin=0.1)))},
        {"crop_rules": (("default", {"margin": 0.1}),)},
        {"crop_rules": ("default",)},
    ],
)
def test_preset_rejects_invalid_values(kw: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        _rgb(**kw)


def test_gray_preset_needs_one_channel_constants() -> None:
    Preset("g", (8, 8), "gray", (127.5,), (127.5,))
    with pytest.raises(InvalidInputError, match="1 value"):
        Preset("g", (8, 8), "gray", (127.5, 127.5, 127.5), (127.5, 127.5, 127.5))


@pytest.mark.parametrize(
    "kw",
    [
        {"margin": -0.5},
        {"margin": float("nan")},
        {"margin": "0.1"},
        {"shift_y": float("inf")},
        {"shift_y": None},
        {"border": "reflect"},
    ],
)
def test_crop_rule_rejects_invalid_values(kw: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        CropRule(**kw)  # type: ignore[arg-type]


def test_sequences_are_normalised_to_tuples_and_hashable() -> None:
    p = Preset("g", [8, 8], "gray", [127.5], [127.5], labels=["x", "y"])  # type: ignore[arg-type]
    assert p.input_size == (8, 8) and p.mean == (127.5,) and p.labels == ("x", "y")
    assert p == Preset("g", (8, 8), "gray", (127.5,), (127.5,), labels=("x", "y"))
    assert hash(p) == hash(Preset("g", (8, 8), "gray", (127.5,), (127.5,), labels=("x", "y")))


# ---------------------------------------------------------------------------------------- constants
def test_scale_and_bias_are_inverse_std_and_negative_mean_over_std() -> None:
    p = _rgb()
    assert p.scale == tuple(1.0 / s for s in RGB_STD)
    assert p.bias == tuple(-m / s for m, s in zip(RGB_MEAN, RGB_STD, strict=True))
    assert p.channels == 3 and (p.width, p.height) == (32, 24)
    pixels = np.arange(256, dtype=np.float64)
    for c in range(3):
        np.testing.assert_allclose(
            pixels * p.scale[c] + p.bias[c], (pixels - RGB_MEAN[c]) / RGB_STD[c], rtol=0, atol=1e-12
        )
    g = Preset("g", (8, 8), "gray", (127.5,), (127.5,))
    assert g.channels == 1 and g.scale == (1 / 127.5,) and g.bias == (-1.0,)


# ---------------------------------------------------------------------------------------- serialisation
def test_dict_and_json_round_trip() -> None:
    rules = (
        ("ultraface-rfb-320", CropRule(margin=0.2, square=True, shift_y=0.05)),
        ("haar", CropRule(margin=0.1, square=False, border="constant")),
        ("default", CropRule(margin=0.15)),
    )
    p = _rgb(interpolation="area", crop_rules=rules)
    d = p.to_dict()
    assert d["scale"] == list(p.scale) and d["bias"] == list(p.bias)
    assert d["layout"] == "NCHW" and d["input_size"] == [32, 24] and d["labels"] == list(LABELS)
    assert d["crop_rules"]["haar"] == {"margin": 0.1, "square": False, "shift_y": 0.0, "border": "constant"}
    assert Preset.from_dict(d) == p
    assert Preset.from_dict(json.loads(json.dumps(d))) == p
    assert Preset.from_json(p.to_json()) == p
    # Order of the rules given does not matter: presets are equal either way.
    assert _rgb(interpolation="area", crop_rules=tuple(reversed(rules))) == p
    assert p.crop_rule("haar") == rules[1][1]
    assert p.crop_rule("ultraface-slim-320") == rules[2][1]  # falls back to "default"


def test_from_dict_ignores_derived_keys() -> None:
    d = _rgb().to_dict()
    d["scale"] = [1.0, 1.0, 1.0]
    d["bias"] = [0.0, 0.0, 0.0]
    assert Preset.from_dict(d).scale == _rgb().scale


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("name"),
        lambda d: d.pop("mean"),
        lambda d: d.update(input_size=[32]),
        lambda d: d.update(input_size="big"),
        lambda d: d.update(mean=["x", 1, 2]),
        lambda d: d.update(color="cmyk"),
        lambda d: d.update(crop_rules=[1, 2]),
        lambda d: d.update(crop_rules={"default": {"margin": 0.1, "zoom": 2}}),
    ],
)
def test_from_dict_rejects_bad_descriptions(mutate: object) -> None:
    d = _rgb().to_dict()
    mutate(d)  # type: ignore[operator]
    with pytest.raises(InvalidInputError):
        Preset.from_dict(d)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '"x"'])
def test_from_json_rejects_non_objects(text: str) -> None:
    with pytest.raises(InvalidInputError):
        Preset.from_json(text)


def test_with_crop_rule_returns_a_new_preset() -> None:
    p = _rgb()
    q = p.with_crop_rule("haar", CropRule(margin=0.3))
    assert p.crop_rule("haar") == CropRule()
    assert q.crop_rule("haar") == CropRule(margin=0.3) and q.crop_rule("default") == CropRule()


# ---------------------------------------------------------------------------------------- preprocess
def test_preprocess_rgb_and_bgr_match_hand_computation() -> None:
    img = _image(24, 32)  # already the input size: no resize involved
    b, g, r = (img[:, :, i].astype(np.float64) for i in range(3))
    for color, order in (("rgb", (r, g, b)), ("bgr", (b, g, r))):
        x = _rgb(color=color).preprocess([img])
        assert x.shape == (1, 3, 24, 32) and x.dtype == np.float32 and x.flags.c_contiguous
        for c in range(3):
            expected = (order[c] - RGB_MEAN[c]) / RGB_STD[c]
            np.testing.assert_allclose(x[0, c], expected, rtol=0, atol=1e-5)


def test_preprocess_gray_matches_luma_formula() -> None:
    img = _image(24, 32, seed=1)
    p = Preset("g", (32, 24), "gray", (100.0,), (50.0,))
    x = p.preprocess([img])
    assert x.shape == (1, 1, 24, 32)
    b, g, r = (img[:, :, i].astype(np.float64) for i in range(3))
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    pixel = x[0, 0].astype(np.float64) * 50.0 + 100.0
    # OpenCV rounds the fixed-point luma to an integer: within one grey level of the exact formula.
    assert np.max(np.abs(pixel - luma)) <= 1.0
    assert np.allclose(pixel, np.round(pixel), atol=1e-3)


def test_preprocess_bgra_drops_alpha_and_gray_input_is_broadcast() -> None:
    bgr = _image(24, 32, seed=2)
    alpha = _image(24, 32, None, seed=3)
    bgra = np.dstack([bgr, alpha])
    for color in ("rgb", "bgr"):
        p = _rgb(color=color)
        np.testing.assert_array_equal(p.preprocess([bgra]), p.preprocess([bgr]))
    g = Preset("g", (32, 24), "gray", (127.5,), (127.5,))
    np.testing.assert_array_equal(g.preprocess([bgra]), g.preprocess([bgr]))

    gray = _image(24, 32, None, seed=4)
    x = _rgb().preprocess([gray])
    for c in range(3):
        np.testing.assert_allclose(x[0, c], (gray - RGB_MEAN[c]) / RGB_STD[c], rtol=0, atol=1e-5)
    xg = g.preprocess([gray, gray[:, :, None]])
    np.testing.assert_allclose(xg[0, 0], (gray - 127.5) / 127.5, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(xg[0], xg[1])


def test_preprocess_resizes_with_the_preset_interpolation() -> None:
    img = _image(48, 64, None, seed=5)  # exactly 2x the input size (32x24)
    area = Preset("g", (32, 24), "gray", (0.0,), (1.0,), interpolation="area").preprocess([img])[0, 0]
    blocks = img.astype(np.float64).reshape(24, 2, 32, 2).mean(axis=(1, 3))
    assert np.max(np.abs(area - blocks)) <= 0.5 + 1e-6  # block mean, rounded to uint8
    nearest = Preset("g", (32, 24), "gray", (0.0,), (1.0,), interpolation="nearest").preprocess([img])[0, 0]
    np.testing.assert_array_equal(nearest, img[0::2, 0::2].astype(np.float32))


def test_preprocess_batches_any_sizes_and_handles_empty_lists() -> None:
    p = _rgb()
    x = p.preprocess([_image(10, 50), _image(80, 20), _image(24, 32)])
    assert x.shape == (3, 3, 24, 32)
    np.testing.assert_array_equal(x[2:], p.preprocess([_image(24, 32)]))
    assert p.preprocess([]).shape == (0, 3, 24, 32)
    with pytest.raises(InvalidImageError):
        p.preprocess([_image(24, 32, 2)])


# ---------------------------------------------------------------------------------------- crop windows
@pytest.mark.parametrize(
    ("rule", "box", "expected"),
    [
        # square, no margin: side = max(20, 40) = 40 around centre (20, 40)
        (CropRule(), (10, 20, 30, 60), (0, 20, 40, 60)),
        # not square, margin 0.25: 20x40 -> 30x60 around (20, 40); left = floor(5.5) = 5, top = floor(10.5)
        (CropRule(margin=0.25, square=False), (10, 20, 30, 60), (5, 10, 35, 70)),
        # shift_y 0.1 of h=20 moves the centre from y=10 to y=12; left = floor(-4.5) = -5
        (CropRule(shift_y=0.1), (0, 0, 10, 20), (-5, 2, 15, 22)),
        # round half up: cx - side/2 = 0.5 -> 1 (banker's rounding would give 0)
        (CropRule(), (0.5, 0.5, 3.5, 3.5), (1, 1, 4, 4)),
        # side 2.5 -> 3 (half up), centre 1.25 -> left floor(0.5) = 0
        (CropRule(), (0, 0, 2.5, 2.5), (0, 0, 3, 3)),
        # margin 0.25 on a 3-px box: side 4.5 -> 5, left = floor(1.5 - 2.25 + 0.5) = floor(-0.25) = -1
        (CropRule(margin=0.25), (0, 0, 3, 3), (-1, -1, 4, 4)),
        # tiny boxes still give at least one pixel
        (CropRule(), (5, 5, 5.2, 5.2), (5, 5, 6, 6)),
        # negative margin shrinks the box
        (CropRule(margin=-0.25, square=False), (0, 0, 40, 20), (10, 5, 30, 15)),
    ],
)
def test_window_matches_hand_computation(rule: CropRule, box: tuple[float, ...], expected: tuple[int, ...]) -> None:
    assert rule.window(box) == expected
    assert rule.window(np.asarray(box, dtype=np.float32)) == expected  # numpy boxes work too


@pytest.mark.parametrize(
    "box",
    [
        None,
        5,
        "abcd",
        (1, 2, 3),
        (1, 2, 3, 4, 5),
        (0, 0, 0, 0),
        (5, 5, 1, 10),
        (5, 5, 10, 1),
        (0, 0, float("nan"), 3),
        (0, 0, 3, float("inf")),
        ("a", 0, 1, 1),
        (0, None, 1, 1),
    ],
)
def test_invalid_boxes_raise_invalid_input(box: object) -> None:
    with pytest.raises(InvalidInputError):
        CropRule().window(box)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        CropRule().crop(_image(10, 10), box)  # type: ignore[arg-type]


def _reference_crop(image: np.ndarray, window: tuple[int, int, int, int], border: str) -> np.ndarray:
    """Pixel-by-pixel reference: outside pixels copy the nearest image pixel, or are 0."""
    left, top, right, bottom = window
    h, w = image.shape[:2]
    out = np.zeros((bottom - top, right - left, *image.shape[2:]), dtype=image.dtype)
    for r in range(bottom - top):
        for c in range(right - left):
            y, x = top + r, left + c
            inside = 0 <= y < h and 0 <= x < w
            if inside:
                out[r, c] = image[y, x]
            elif border == "replicate":
                out[r, c] = image[min(max(y, 0), h - 1), min(max(x, 0), w - 1)]
    return out


BOXES = [
    (3, 2, 9, 8),  # inside
    (-4, -3, 4, 5),  # top-left corner overlaps
    (8, 6, 16, 13),  # bottom-right overlaps
    (-3, 2, 14, 6),  # wider than the image
    (20, 2, 24, 6),  # fully right of the image
    (-9, 2, -5, 6),  # fully left
    (3, 15, 7, 19),  # fully below
    (3, -12, 7, -8),  # fully above
    (-20, -20, -15, -15),  # fully outside, diagonal
]


@pytest.mark.parametrize("box", BOXES)
@pytest.mark.parametrize("border", ["replicate", "constant"])
@pytest.mark.parametrize("channels", [None, 1, 3])
def test_crop_matches_pixel_reference(box: tuple[int, ...], border: str, channels: int | None) -> None:
    image = _image(10, 12, channels, seed=7)
    rule = CropRule(square=False, border=border)  # type: ignore[arg-type]
    window = rule.window(box)
    crop = rule.crop(image, box)
    assert crop.shape == (window[3] - window[1], window[2] - window[0], *image.shape[2:])
    assert crop.dtype == np.uint8 and crop.flags.c_contiguous
    np.testing.assert_array_equal(crop, _reference_crop(image, window, border))


def test_crop_inside_is_an_exact_slice_and_does_not_alias() -> None:
    image = _image(30, 40)
    crop = CropRule(margin=0.1).crop(image, (10, 5, 20, 15))
    left, top, right, bottom = CropRule(margin=0.1).window((10, 5, 20, 15))
    np.testing.assert_array_equal(crop, image[top:bottom, left:right])
    crop[:] = 0
    assert image[top:bottom, left:right].any()  # the crop is a copy


def test_replicated_border_is_never_stretched() -> None:
    # A gradient image: replicated rows/columns must repeat the edge exactly, inner pixels stay in place.
    image = (np.arange(8)[None, :] * 10 + np.arange(6)[:, None] * 3).astype(np.uint8)
    crop = CropRule(square=False).crop(image, (-3, -2, 5, 4))  # window (-3, -2) .. (5, 4)
    np.testing.assert_array_equal(crop[2:, 3:], image[0:4, 0:5])
    np.testing.assert_array_equal(crop[2:, 0], image[0:4, 0])
    np.testing.assert_array_equal(crop[0, 3:], image[0, 0:5])
    assert np.all(crop[:2, :3] == image[0, 0])


def test_crop_rejects_non_images() -> None:
    with pytest.raises(InvalidImageError):
        CropRule().crop([[1, 2], [3, 4]], (0, 0, 1, 1))  # type: ignore[arg-type]
    with pytest.raises(InvalidImageError):
        CropRule().crop(np.zeros((0, 4), np.uint8), (0, 0, 1, 1))
    with pytest.raises(InvalidImageError):
        CropRule().crop(np.zeros((2, 2, 2, 2), np.uint8), (0, 0, 1, 1))


def test_window_side_grows_with_margin() -> None:
    rule = CropRule(margin=0.2)
    left, top, right, bottom = rule.window((100, 100, 150, 180))
    assert right - left == bottom - top == math.floor(80 * 1.4 + 0.5)
