"""Template matching: ZNCC scores against a direct float64 reference and OpenCV, and the hits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from convtool.errors import UsageError
from convtool.match import Match, draw_overlay, find_matches, match_template, score_picture

# Every test runs with the compiled window sums and with numpy's (see conftest.py).
pytestmark = pytest.mark.usefixtures("implementation")

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def zncc_reference(image, template):
    """ZNCC by its definition, one window at a time (slow, for tiny arrays only)."""
    image = np.asarray(image, dtype=np.float64)
    t = np.asarray(template, dtype=np.float64)
    h, w = t.shape
    t0 = t - t.mean()
    out = np.zeros((image.shape[0] - h + 1, image.shape[1] - w + 1))
    for y in range(out.shape[0]):
        for x in range(out.shape[1]):
            window = image[y : y + h, x : x + w]
            if np.ptp(window) == 0 or np.ptp(t) == 0:
                continue  # zero variance: scores 0 by definition
            w0 = window - window.mean()
            out[y, x] = (w0 * t0).sum() / np.sqrt((w0 * w0).sum() * (t0 * t0).sum())
    return out


def textured(shape, seed=0):
    """A smooth, photo-like random texture on a 0..255 scale."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    noise = gaussian_filter(rng.normal(size=shape), 2.0)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = noise / noise.std() * 30 + 0.2 * xx + 40 * np.sin(yy / 17.0) + 128
    return np.clip(image, 0, 255)


def sample_photo(name="camera.png", gray=True):
    """A photo from samples/ as floats (0..255), or a synthetic texture if it is missing."""
    path = SAMPLES / name
    if not path.exists():
        texture = textured((256, 320))
        return texture if gray else np.stack([texture, texture[::-1], 255 - texture], axis=2)
    from convtool.images import read_image

    pixels = read_image(path, gray=gray).pixels.astype(np.float64)
    return pixels[..., 0] if gray else pixels


# ----------------------------------------------------------------------------- scores


@pytest.mark.parametrize("method", ["auto", "direct", "fft"])
@pytest.mark.parametrize("template_shape", [(3, 4), (1, 4), (3, 1), (2, 2), (9, 11)])
def test_scores_equal_the_definition_on_tiny_arrays(method, template_shape):
    rng = np.random.default_rng(7)
    image = rng.integers(0, 6, size=(9, 11)).astype(np.float64)
    image[:5, :6] = 3.0  # a flat patch: the windows inside it have zero variance
    h, w = template_shape
    template = rng.integers(0, 6, size=(h, w)).astype(np.float64)
    template[0, 0] += 1  # never flat
    scores = match_template(image, template, method=method)
    expected = zncc_reference(image, template)
    assert scores.shape == (9 - h + 1, 11 - w + 1)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)
    if h <= 5 and w <= 6:
        assert scores[0, 0] == 0.0  # the window lies inside the flat patch


def test_flat_template_and_flat_image_score_zero_not_nan():
    rng = np.random.default_rng(1)
    image = rng.random((12, 13))
    assert not match_template(image, np.full((3, 3), 0.1)).any()
    assert not match_template(np.full((12, 13), 0.1), image[:3, :3]).any()
    assert not match_template(image, image[:1, :1]).any()  # one pixel has no variance


def test_flat_regions_score_exactly_zero_across_prefix_blocks():
    # Wider than one block of prefix sums, with large values: rounding must not turn the
    # flat windows into noise scores.
    rng = np.random.default_rng(2)
    image = 1000.0 + rng.integers(0, 4, size=(6, 2100)).astype(np.float64)
    image[:, 1500:1600] = 1000.5
    template = image[1:4, 10:14].copy()
    scores = match_template(image, template)
    np.testing.assert_allclose(scores, zncc_reference(image, template), rtol=0, atol=1e-9)
    assert not scores[:, 1500:1597].any()


def test_scores_match_opencv_tm_ccoeff_normed():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    for image_shape, template_shape in [((60, 70), (7, 5)), ((80, 90), (21, 24))]:
        image = rng.random(image_shape).astype(np.float32) * 255
        template = rng.random(template_shape).astype(np.float32) * 255
        expected = cv2.matchTemplate(image, template, cv2.TM_CCOEFF_NORMED)
        # OpenCV works in float32: agreement to ~1e-6, so 1e-4 leaves room.
        np.testing.assert_allclose(match_template(image, template), expected, atol=1e-4)


def test_per_channel_averages_the_channel_scores():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 8, size=(9, 10, 3)).astype(np.float64)
    image[..., 2] = 5.0  # a flat channel contributes 0
    template = image[2:5, 3:7].copy()
    expected = sum(zncc_reference(image[..., c], template[..., c]) for c in range(3)) / 3
    scores = match_template(image, template, per_channel=True)
    np.testing.assert_allclose(scores, expected, atol=1e-12)
    assert scores[2, 3] == pytest.approx(2 / 3)


def test_one_channel_template_is_used_for_every_channel():
    rng = np.random.default_rng(5)
    image = rng.random((10, 12, 3))
    template = image[1:4, 2:6, 1]
    expected = sum(zncc_reference(image[..., c], template) for c in range(3)) / 3
    np.testing.assert_allclose(
        match_template(image, template[..., None], per_channel=True), expected, atol=1e-12
    )


# ----------------------------------------------------------------------------- a photo


@pytest.fixture(scope="module")
def photo():
    return sample_photo()


def cut(photo):
    """A textured 40x56 template (std 56 levels in camera.png) and its top-left corner (y, x)."""
    y, x = 150, 220
    return photo[y : y + 40, x : x + 56].copy(), (y, x)


def test_template_cut_from_a_photo_is_found_where_it_was_cut(photo):
    template, (y, x) = cut(photo)
    scores = match_template(photo, template)
    assert np.unravel_index(scores.argmax(), scores.shape) == (y, x)
    assert scores[y, x] > 0.999
    hits = find_matches(scores, template.shape, threshold=0.9)
    assert (hits[0].x, hits[0].y, hits[0].width, hits[0].height) == (x, y, 56, 40)


def test_template_is_found_under_gaussian_noise(photo):
    template, (y, x) = cut(photo)
    noisy = photo + np.random.default_rng(6).normal(0, 20, size=photo.shape)
    scores = match_template(noisy, template)
    assert np.unravel_index(scores.argmax(), scores.shape) == (y, x)
    assert scores[y, x] > 0.8


@pytest.mark.parametrize("gain, offset", [(0.5, 40.0), (1.7, -30.0), (3.0, 1000.0)])
def test_scores_ignore_brightness_and_contrast(photo, gain, offset):
    template, (y, x) = cut(photo)
    scores = match_template(gain * photo + offset, template)
    assert scores[y, x] == pytest.approx(1.0, abs=1e-9)
    assert np.unravel_index(scores.argmax(), scores.shape) == (y, x)
    # The whole map is invariant, not just the peak.
    np.testing.assert_allclose(scores, match_template(photo, template), atol=1e-9)


def test_colour_template_is_found_per_channel():
    photo = sample_photo("astronaut.png", gray=False)
    y, x = photo.shape[0] // 3, photo.shape[1] // 2
    template = photo[y : y + 30, x : x + 40]
    scores = match_template(photo, template, per_channel=True)
    assert np.unravel_index(scores.argmax(), scores.shape) == (y, x)
    assert scores[y, x] > 0.999


# ----------------------------------------------------------------------------- hits


def two_copies():
    """A noise scene with one pattern pasted twice; the second copy is slightly noisier."""
    rng = np.random.default_rng(8)
    scene = rng.random((120, 160)) * 100
    pattern = textured((15, 20), seed=9)
    scene[30:45, 20:40] = pattern
    scene[70:85, 110:130] = pattern + rng.normal(0, 3, size=pattern.shape)
    return scene, pattern


def test_two_copies_give_exactly_two_hits_best_first():
    scene, pattern = two_copies()
    hits = find_matches(match_template(scene, pattern), pattern.shape, threshold=0.8)
    assert [(m.x, m.y) for m in hits] == [(20, 30), (110, 70)]
    assert hits[0].score > hits[1].score > 0.8
    assert hits[0].score == pytest.approx(1.0)


def test_threshold_and_max_matches_are_respected():
    scene, pattern = two_copies()
    scores = match_template(scene, pattern)
    second = find_matches(scores, pattern.shape, threshold=0.8)[1].score
    assert len(find_matches(scores, pattern.shape, threshold=second + 1e-6)) == 1
    assert len(find_matches(scores, pattern.shape, threshold=second)) == 2
    best = find_matches(scores, pattern.shape, threshold=0.8, max_matches=1)
    assert [(m.x, m.y) for m in best] == [(20, 30)]
    for m in find_matches(scores, pattern.shape, threshold=0.1):
        assert m.score >= 0.1


def test_hits_never_overlap_and_each_is_its_neighbourhood_maximum():
    rng = np.random.default_rng(10)
    scores = rng.random((40, 50)) * 1.8 - 1  # -1 .. 0.8
    scores[10:20, 10:20] = 0.9  # the top is a plateau: ties are broken, not all reported
    h, w = 5, 7
    hits = find_matches(scores, (h, w), threshold=0.0)
    assert hits and [m.score for m in hits] == sorted((m.score for m in hits), reverse=True)
    for i, a in enumerate(hits):
        window = scores[max(a.y - h + 1, 0) : a.y + h, max(a.x - w + 1, 0) : a.x + w]
        assert a.score == window.max()
        for b in hits[i + 1 :]:
            assert abs(a.x - b.x) >= w or abs(a.y - b.y) >= h
    plateau = [m for m in hits if m.score == 0.9]
    assert (plateau[0].x, plateau[0].y) == (10, 10)  # the first in reading order


def test_matches_serialise_to_json_objects():
    match = Match(x=3, y=4, score=0.95, width=8, height=6)
    text = json.dumps([match.to_dict()])
    assert json.loads(text) == [{"x": 3, "y": 4, "score": 0.95, "width": 8, "height": 6}]
    scene, pattern = two_copies()
    hit = find_matches(match_template(scene, pattern), pattern.shape)[0]
    assert type(hit.x) is int and type(hit.score) is float
    json.dumps([m.to_dict() for m in [hit]])


# ----------------------------------------------------------------------------- geometry


def test_same_geometry_puts_each_score_on_its_window_centre():
    rng = np.random.default_rng(11)
    image, template = rng.random((20, 25)), rng.random((4, 7))
    valid = match_template(image, template)
    same = match_template(image, template, geometry="same")
    assert same.shape == image.shape
    # Centre of a 4x7 window with top-left (y, x): (y + 2, x + 3).
    np.testing.assert_array_equal(same[2 : 2 + 17, 3 : 3 + 19], valid)
    untouched = np.ones(image.shape, dtype=bool)
    untouched[2 : 2 + 17, 3 : 3 + 19] = False
    assert not same[untouched].any()


def test_hits_from_a_same_map_are_top_left_corners_too():
    scene, pattern = two_copies()
    same = match_template(scene, pattern, geometry="same")
    valid = match_template(scene, pattern)
    assert find_matches(same, pattern.shape, geometry="same") == find_matches(valid, pattern.shape)
    # Threshold 0 would make the zero border of a same map into hits if it were searched.
    hits = find_matches(same, pattern.shape, threshold=-1.0, geometry="same")
    assert all(0 <= m.y <= 120 - 15 and 0 <= m.x <= 160 - 20 for m in hits)


# ----------------------------------------------------------------------------- overlay


def test_overlay_draws_the_box_outline_and_nothing_else():
    scene = np.zeros((20, 30, 3), dtype=np.uint8)
    out = draw_overlay(scene, [Match(x=5, y=4, score=1.0, width=8, height=6)], thickness=2)
    expected = np.zeros((20, 30), dtype=bool)
    expected[4:10, 5:13] = True  # the matched window ...
    expected[6:8, 7:11] = False  # ... minus its inside, 2 pixels in from each side
    np.testing.assert_array_equal(out[..., 0] == 255, expected)
    assert not out[..., 1:].any()
    assert not scene.any()  # the input is untouched


def test_overlay_turns_grey_into_rgb_and_clips_boxes_at_the_border():
    scene = np.full((10, 12), 0.5, dtype=np.float32)
    hits = [Match(x=9, y=-2, score=0.9, width=5, height=5)]
    out = draw_overlay(scene, hits, colour=(0.0, 1.0, 0.0), thickness=1)
    assert out.shape == (10, 12, 3) and out.dtype == np.float32
    green = (out == (0.0, 1.0, 0.0)).all(axis=2)
    expected = np.zeros((10, 12), dtype=bool)
    expected[2, 9:12] = True  # bottom side (rows -2..2 of which 0..2 are inside)
    expected[0:3, 9] = True  # left side; the right side (x = 13) is outside
    np.testing.assert_array_equal(green, expected)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "image, template, kwargs, message",
    [
        (np.zeros((5, 5)), np.zeros((6, 2)), {}, "template 6x2 is larger than the image 5x5"),
        (np.zeros((5, 5)), np.zeros((0, 2)), {}, "template is empty"),
        (np.array([[np.nan, 1.0], [2.0, 3.0]]), np.ones((1, 1)), {}, "image contains NaN"),
        (np.ones((5, 5)), np.array([[np.inf]]), {}, "template contains NaN or infinity"),
        (np.ones((5, 5, 3)), np.ones((2, 2)), {}, "image has 3 channels: pass luminance"),
        (np.ones((5, 5, 3)), np.ones((2, 2, 2)), {"per_channel": True}, "same number"),
        (np.ones((5, 5)), np.ones((2, 2)), {"geometry": "full"}, "unknown geometry 'full'"),
    ],
)
def test_bad_inputs_are_refused_with_one_clear_line(image, template, kwargs, message):
    with pytest.raises(UsageError, match=message) as err:
        match_template(image, template, **kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"threshold": "high"}, "threshold must be a number"),
        ({"threshold": float("nan")}, "threshold must be finite"),
        ({"threshold": 2}, "threshold must be from -1 to 1"),
        ({"threshold": -1.01}, "threshold must be from -1 to 1"),
        ({"max_matches": 0}, "max_matches must be at least 1"),
        ({"max_matches": 2.5}, "max_matches must be a positive integer"),
    ],
)
def test_bad_match_options_are_refused(kwargs, message):
    with pytest.raises(UsageError, match=message):
        find_matches(np.zeros((4, 4)), (2, 2), **kwargs)


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("clip", [0.0, 0.0, 0.0, 0.5, 1.0]),
        ("abs", [1.0, 0.5, 0.0, 0.5, 1.0]),
        ("offset", [0.0, 0.25, 0.5, 0.75, 1.0]),
        ("rescale", [0.0, 0.25, 0.5, 0.75, 1.0]),
    ],
)
def test_score_picture_maps_scores_to_0_1_as_range_says(mode, expected):
    scores = np.array([[-1.0, -0.5, 0.0, 0.5, 1.0]])
    np.testing.assert_allclose(score_picture(scores, mode), [expected])


def test_score_picture_of_a_constant_map_is_black_and_bad_modes_are_refused():
    assert not score_picture(np.full((3, 3), 0.4), "rescale").any()
    with pytest.raises(UsageError, match="range mode must be one of clip, abs, offset, rescale"):
        score_picture(np.zeros((2, 2)), "gamma")


def test_score_picture_scales_to_the_output_levels():
    scores = np.array([[-1.0, 0.0, 1.0]])
    np.testing.assert_allclose(score_picture(scores, "offset", top=255.0), [[0.0, 127.5, 255.0]])
