"""Image corruptions: range, monotonicity in severity, determinism, exact definitions, errors."""

from __future__ import annotations

import numpy as np
import pytest

from mmkern.data import CORRUPTIONS, ArraySplit, corrupt, corrupted_sets
from mmkern.data.corruptions import SEVERITY_PARAMETERS, shift_pixels


def _images(rng, n=16, c=3, h=32, w=32):
    """Smooth-ish images in [0, 1] with structure (so blur and shifts change them)."""
    base = rng.random((n, c, h // 4, w // 4))
    return np.kron(base, np.ones((1, 1, 4, 4))).astype(np.float32)[:, :, :h, :w]


@pytest.mark.parametrize("corruption", CORRUPTIONS)
@pytest.mark.parametrize("shape", [(12, 3, 32, 32), (9, 1, 8, 8), (5, 1, 28, 28)])
def test_range_shape_dtype_and_input_untouched(rng, corruption, shape):
    x = _images(rng, *shape)
    before = x.copy()
    for severity in range(1, 6):
        out = corrupt(x, corruption, severity, seed=3)
        assert out.shape == x.shape and out.dtype == np.float32 and out.flags.c_contiguous
        assert out.min() >= 0 and out.max() <= 1
        assert not np.array_equal(out, x)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_change_grows_with_severity(rng, corruption):
    x = _images(rng, 64, 3, 32, 32)
    change = [np.abs(corrupt(x, corruption, s, seed=1) - x).mean() for s in range(1, 6)]
    assert all(b >= a for a, b in zip(change, change[1:])), change
    assert change[-1] > 1.5 * change[0], change


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_deterministic_given_seed(rng, corruption):
    x = _images(rng)
    a = corrupt(x, corruption, 3, seed=11)
    np.testing.assert_array_equal(a, corrupt(x, corruption, 3, seed=11))
    other = corrupt(x, corruption, 3, seed=12)
    if corruption in ("gaussian_noise", "pixel_shift"):  # random
        assert not np.array_equal(a, other)
    else:  # deterministic transforms ignore the seed
        np.testing.assert_array_equal(a, other)


def test_global_rng_untouched(rng):
    x = _images(rng)
    np.random.seed(5)
    state = np.random.get_state()
    for c in CORRUPTIONS:
        corrupt(x, c, 5, seed=0)
    after = np.random.get_state()
    assert np.array_equal(state[1], after[1]) and state[2] == after[2]


def test_gaussian_noise_definition(rng):
    x = np.full((200, 1, 16, 16), 0.5, np.float32)
    for s in (1, 3):  # sigma <= 0.15: clipping at 0.5 from the mean is negligible
        out = corrupt(x, "gaussian_noise", s, seed=0)
        sigma = SEVERITY_PARAMETERS["gaussian_noise"][s - 1]
        assert np.std(out - 0.5) == pytest.approx(sigma, rel=0.03)
        assert abs(np.mean(out - 0.5)) < 0.01
    # common random numbers: severity 5 is severity 1's noise, scaled
    z1 = corrupt(x, "gaussian_noise", 1, seed=0) - 0.5
    z5 = corrupt(x, "gaussian_noise", 5, seed=0) - 0.5
    inside = np.abs(z5) < 0.49
    np.testing.assert_allclose(z5[inside], z1[inside] * 0.30 / 0.05, atol=1e-5)


def test_contrast_definition(rng):
    x = _images(rng, 8, 3, 16, 16)
    out = corrupt(x, "contrast", 4, seed=0)
    m = x.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(out, m + 0.2 * (x - m), atol=1e-6)
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), m.ravel(), atol=1e-6)


def test_blur_definition_preserves_constant_images_and_smooths(rng):
    const = np.full((2, 3, 8, 8), 0.3, np.float32)
    np.testing.assert_allclose(corrupt(const, "gaussian_blur", 5), const, atol=1e-6)
    x = np.zeros((1, 1, 15, 15), np.float32)
    x[0, 0, 7, 7] = 1
    out = corrupt(x, "gaussian_blur", 3)  # sigma 1 pixel
    assert out.sum() == pytest.approx(1, abs=1e-5)
    assert out[0, 0, 7, 8] / out[0, 0, 7, 7] == pytest.approx(np.exp(-0.5), rel=1e-2)


@pytest.mark.parametrize("size, expected", [(8, [1, 1, 2, 2, 3]), (28, [2, 4, 5, 7, 9]),
                                            (32, [2, 4, 6, 8, 10])])
def test_shift_pixels_table(size, expected):
    assert [shift_pixels(size, size, s) for s in range(1, 6)] == expected


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_pixel_shift_moves_every_image_by_exactly_s(rng, severity):
    n, h, w = 300, 32, 32
    x = np.zeros((n, 2, h, w), np.float32)
    x[:, :, 16, 16] = 1  # one bright pixel, the same in both channels
    out = corrupt(x, "pixel_shift", severity, seed=7)
    s = shift_pixels(h, w, severity)
    offsets = []
    for img in out:
        (ys, xs) = np.nonzero(img[0])
        assert len(ys) == 1
        dy, dx = ys[0] - 16, xs[0] - 16
        assert max(abs(dy), abs(dx)) == s
        np.testing.assert_array_equal(img[0], img[1])
        offsets.append((dy, dx))
    # directions are spread over the ring of 8 s offsets
    assert len(set(offsets)) >= min(8 * s, 40)


def test_pixel_shift_fills_with_zero_and_keeps_content(rng):
    x = _images(rng, 10, 1, 8, 8) * 0.5 + 0.5  # no zeros inside
    out = corrupt(x, "pixel_shift", 5, seed=0)  # 3 pixels on 8x8
    for src, dst in zip(x, out):
        zero_rows = np.all(dst[0] == 0, axis=1).sum()
        zero_cols = np.all(dst[0] == 0, axis=0).sum()
        assert max(zero_rows, zero_cols) == 3
        assert (dst > 0).sum() == (8 - zero_rows) * (8 - zero_cols)


def test_corrupted_sets_names_and_info(rng):
    test = ArraySplit(_images(rng, 6, 1, 8, 8), np.arange(6))
    sets, info = corrupted_sets(test, ["gaussian_blur", "gaussian_noise"], [2, 5], seed=4)
    assert list(sets) == ["gaussian_blur-2", "gaussian_blur-5", "gaussian_noise-2",
                          "gaussian_noise-5"]
    for key, split in sets.items():
        np.testing.assert_array_equal(split.y, test.y)
        assert info[key]["seed"] == 4
    assert info["gaussian_noise-5"]["sigma"] == 0.3
    assert corrupted_sets(test, None)[0] == {}
    np.testing.assert_array_equal(sets["gaussian_noise-5"].x,
                                  corrupt(test.x, "gaussian_noise", 5, seed=4))


@pytest.mark.parametrize("kwargs, error, message", [
    ({"corruption": "fog"}, ValueError, "corruption: unknown 'fog'; valid: gaussian_noise"),
    ({"corruption": 3}, TypeError, "corruption must be a str"),
    ({"severity": 0}, ValueError, r"severity must be in \[1, 5\], got 0"),
    ({"severity": 6}, ValueError, "severity must be in"),
    ({"severity": 2.0}, TypeError, "severity must be an int"),
    ({"seed": -1}, ValueError, "seed must be in"),
    ({"x": np.zeros((2, 8, 8), np.float32)}, ValueError, r"shape \(n, C, H, W\)"),
    ({"x": np.zeros((2, 1, 8, 8), np.uint8)}, TypeError, "floating dtype"),
    ({"x": np.full((2, 1, 8, 8), 2.0)}, ValueError, r"values in \[0, 1\]"),
    ({"x": np.full((2, 1, 8, 8), np.nan)}, ValueError, r"values in \[0, 1\]"),
])
def test_errors(kwargs, error, message):
    args = {"x": np.zeros((2, 1, 8, 8), np.float32), "corruption": "contrast", "severity": 1,
            "seed": 0}
    args.update(kwargs)
    with pytest.raises(error, match=message):
        corrupt(args.pop("x"), args.pop("corruption"), args.pop("severity"), **args)


def test_corrupted_sets_errors(rng):
    test = ArraySplit(_images(rng, 2, 1, 8, 8), np.arange(2))
    with pytest.raises(ValueError, match="ood: unknown 'snow'"):
        corrupted_sets(test, ["snow"])
    with pytest.raises(ValueError, match="ood_severities entry must be in"):
        corrupted_sets(test, ["contrast"], [7])
    with pytest.raises(ValueError, match="duplicates"):
        corrupted_sets(test, ["contrast", "contrast"])
