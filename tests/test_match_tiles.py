"""Matching tile by tile (convtool/match/tiled.py): the same scores as the definition wherever
the tiles are cut, flat windows still exactly 0, and the same bits on any number of threads."""

from __future__ import annotations

import numpy as np
import pytest

from convtool.match import match_template, tiled

# Every test runs with the compiled tile kernel and with numpy's window sums (conftest.py).
pytestmark = pytest.mark.usefixtures("implementation")


def zncc_reference(image, template):
    """ZNCC by its definition, with all windows at once (float64, for small arrays)."""
    image = np.asarray(image, dtype=np.float64)
    t = np.asarray(template, dtype=np.float64)
    h, w = t.shape
    windows = np.lib.stride_tricks.sliding_window_view(image, (h, w))
    w0 = windows - windows.mean(axis=(2, 3), keepdims=True)
    t0 = t - t.mean()
    numerator = np.einsum("ijkl,kl->ij", w0, t0)
    energy = np.einsum("ijkl,ijkl->ij", w0, w0)
    flat = np.ptp(windows, axis=(2, 3)) == 0
    out = np.zeros(numerator.shape)
    np.divide(numerator, np.sqrt(energy * (t0 * t0).sum()), out=out, where=~flat)
    return out


@pytest.fixture
def small_tiles(monkeypatch):
    """Transforms of at most 4096 samples: a 150x170 scene is cut into many tiles."""
    monkeypatch.setattr(tiled, "MAX_TRANSFORM", 4096)
    tiled.plan_tiles.cache_clear()
    yield
    tiled.plan_tiles.cache_clear()


def scene(shape=(150, 170), seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return 100 + 40 * np.sin(yy / 7.0) * np.cos(xx / 11.0) + rng.normal(0, 5, size=shape)


@pytest.mark.parametrize("template_shape", [(8, 8), (9, 13), (31, 7), (40, 40)])
def test_tiles_give_the_definition_wherever_they_are_cut(small_tiles, template_shape):
    image = scene()
    h, w = template_shape
    template = image[20 : 20 + h, 30 : 30 + w] + np.random.default_rng(1).normal(0, 2, (h, w))
    r, c, _, _ = tiled.plan_tiles(150 - h + 1, 170 - w + 1, h, w)
    rows, cols = 150 - h + 1, 170 - w + 1
    assert -(-rows // r) * -(-cols // c) >= 4  # several tiles, and shorter ones at the ends
    scores = match_template(image, template)
    np.testing.assert_allclose(scores, zncc_reference(image, template), rtol=0, atol=1e-10)


def test_flat_windows_score_exactly_zero_across_tile_edges(small_tiles):
    # Large values (a big mean to cancel) and a flat patch crossing tile edges.
    rng = np.random.default_rng(2)
    image = 5000.0 + rng.integers(0, 4, size=(300, 260)).astype(np.float64)
    image[140:290, 50:200] = 5000.5
    template = image[3:12, 5:14].copy()  # 81 pixels: matched in tiles
    scores = match_template(image, template)
    assert not scores[140 : 290 - 8, 50 : 200 - 8].any()
    np.testing.assert_allclose(scores, zncc_reference(image, template), rtol=0, atol=1e-9)


def test_flat_windows_score_exactly_zero_where_the_running_sums_restart():
    # One tall tile (the compiled column sums start afresh every 512 rows): noise, then a
    # flat run of rows across rows 512 and 1024, then noise again; rounding left by the noisy
    # rows above must not make the flat windows score.
    rng = np.random.default_rng(3)
    image = 3000.0 + rng.normal(0, 40, size=(1300, 40))
    image[450:1100] = 2990.25
    template = image[10:19, 3:12].copy()
    r, _, _, _ = tiled.plan_tiles(1300 - 8, 40 - 8, 9, 9)
    assert r > 1024
    scores = match_template(image, template)
    assert not scores[450 : 1100 - 8].any()
    np.testing.assert_allclose(
        scores[:400], zncc_reference(image[:408], template), rtol=0, atol=1e-9
    )


def test_the_same_bits_on_one_thread_and_on_two(small_tiles):
    # Shorter tiles at the ends, and threads taking the tiles in another order.
    image = scene((301, 287), seed=3)
    template = image[100:110, 50:62].copy()
    r, c, _, _ = tiled.plan_tiles(292, 276, 10, 12)
    assert 292 % r or 276 % c
    one = match_template(image, template, threads=1)
    two = match_template(image, template, threads=2)
    np.testing.assert_array_equal(one, two)


def test_float32_and_uint8_scenes_score_as_their_float64_values():
    image = np.clip(scene((120, 140), seed=4), 0, 255).round()
    template = image[30:40, 50:62].copy()
    expected = match_template(image, template)
    # float32 holds these integers exactly and is read without a float64 copy: the same
    # values, up to the rounding of the mean (numpy sums float32 in other blocks)
    as_float32 = match_template(image.astype(np.float32), template)
    np.testing.assert_allclose(as_float32, expected, rtol=0, atol=1e-12)
    as_uint8 = match_template(image.astype(np.uint8), template.astype(np.uint8))
    np.testing.assert_array_equal(as_uint8, expected)  # converted to float64 first


def test_small_templates_go_to_the_engine_and_agree_with_tiles():
    image = scene((80, 90), seed=5)
    template = image[10:17, 20:29].copy()  # 63 pixels: under the tiles' threshold
    auto = match_template(image, template)
    tiled = match_template(image, template, method="fft")
    np.testing.assert_allclose(auto, tiled, rtol=0, atol=1e-10)
    np.testing.assert_allclose(auto, zncc_reference(image, template), rtol=0, atol=1e-10)


def test_plan_tiles_fits_the_outputs_and_keeps_transforms_bounded():
    for rows, cols, h, w in [(993, 993, 32, 32), (897, 897, 128, 128), (5, 7, 3, 2), (1, 1, 9, 9)]:
        r, c, a, b = tiled.plan_tiles(rows, cols, h, w)
        assert 1 <= r <= rows and 1 <= c <= cols
        assert a >= r + h - 1 and b >= c + w - 1  # nothing wraps into the kept outputs
        assert a * b <= max(tiled.MAX_TRANSFORM, (2 * h + 16) * (2 * w + 16))
    # Equal tiles: the last one is not a sliver.
    r, c, _, _ = tiled.plan_tiles(897, 897, 128, 128)
    assert 897 % r == 0 or 897 % r > r // 2


def test_compiled_scores_equal_numpy_bit_for_bit():
    from convtool.engine import native

    module = native.module()
    if module is None:
        pytest.skip("the numpy run of this module: nothing compiled to compare")
    rng = np.random.default_rng(6)
    s1 = rng.normal(size=(40, 50)) * 30
    noise = rng.random((40, 50)) * rng.choice([0.0, 1e-9, 10.0], size=(40, 50))
    s2 = s1**2 / 64 + noise  # energies from 0 (flat) to large
    numerator = rng.normal(size=(40, 50)) * np.sqrt(noise) * 12
    compiled, numpy_ = np.empty((40, 50)), np.empty((40, 50))
    module.zncc_scores(numerator, s1.copy(), s2.copy(), compiled, 64, 1.0, 1e-6)
    tiled._normalise(
        numerator, s1.copy(), s2.copy(), 64, 1.0, 1e-6, numpy_, np.empty((40, 50), bool)
    )
    np.testing.assert_array_equal(compiled, numpy_)
    assert (compiled == 0).any() and (np.abs(compiled) == 1).any()  # flat and clipped ones
