"""Block bit allocation (docs/METHOD.md §2): the promises of V_i, L_i, T_i and the gamma map."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from semlib.allocation import (
    allocate,
    block_importance,
    computed_levels,
    gamma_map,
    num_blocks,
    pad_to_blocks,
    semantic_levels,
    target_levels,
    upsample_blocks,
    water_fill,
)

# Importance maps: small, odd sizes allowed, grey levels in [0, 1].
sizes = st.tuples(st.integers(1, 40), st.integers(1, 40))
maps = sizes.flatmap(
    lambda hw: arrays(np.float64, hw, elements=st.floats(0.0, 1.0, allow_nan=False, width=32))
)
mean_levels = st.floats(0.25, 4.0)


@settings(max_examples=200, deadline=None)
@given(maps, mean_levels)
def test_mean_level_is_kept_also_after_clipping(g, m):
    T = target_levels(block_importance(g), m, (0.25, 4.0))
    assert T.mean() == pytest.approx(m, rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(maps, mean_levels, st.floats(0.05, 1.0), st.floats(1.0, 20.0))
def test_clipping_respects_the_range(g, m, lo_frac, hi_frac):
    lo, hi = m * lo_frac, m * hi_frac
    T = target_levels(block_importance(g), m, (lo, hi))
    assert T.min() >= lo * (1 - 1e-12)
    assert T.max() <= hi * (1 + 1e-12)
    assert T.mean() == pytest.approx(m, rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(sizes, st.floats(0.0, 1.0), mean_levels)
def test_uniform_importance_gives_uniform_levels(hw, value, m):
    g = np.full(hw, value)
    L = semantic_levels(block_importance(g))
    n = L.size
    np.testing.assert_allclose(L, 1.0 / n, rtol=1e-12)
    np.testing.assert_allclose(target_levels(L, m, (0.25, 4.0)), m, rtol=1e-12)


@settings(max_examples=200, deadline=None)
@given(maps, mean_levels)
def test_levels_are_monotone_in_importance(g, m):
    V = block_importance(g)
    T = target_levels(V, m, (0.25, 4.0))
    order = np.argsort(V.ravel(), kind="stable")
    assert (np.diff(T.ravel()[order]) >= -1e-12).all()


@settings(max_examples=100, deadline=None)
@given(maps, st.floats(1e-3, 1e3), mean_levels, st.floats(0.0, 3.0))
def test_scaling_importance_by_a_positive_constant_changes_nothing(g, c, m, kappa):
    a = allocate(g, 100.0, kappa=kappa, mean_level=m)
    b = allocate(g * c, 100.0, kappa=kappa, mean_level=m)
    np.testing.assert_allclose(a.L, b.L, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(a.T, b.T, rtol=1e-9)
    np.testing.assert_allclose(a.gamma_map, b.gamma_map, rtol=1e-5)


@settings(max_examples=100, deadline=None)
@given(maps)
def test_levels_sum_to_one(g):
    assert semantic_levels(block_importance(g)).sum() == pytest.approx(1.0, rel=1e-12)


def test_a_block_twice_as_important_gets_twice_the_average_level():
    g = np.ones((16, 16))
    g[:8, :8] = 2.0  # V = [[128, 64], [64, 64]], V̄ = 80
    T = computed_levels(block_importance(g), 1.0)
    np.testing.assert_allclose(T, [[1.6, 0.8], [0.8, 0.8]])
    np.testing.assert_allclose(target_levels(block_importance(g), 1.0, (0.25, 4.0)), T)


def test_odd_sizes_are_padded_by_edge_replication():
    g = np.arange(9 * 10, dtype=float).reshape(9, 10)
    p = pad_to_blocks(g)
    assert p.shape == (16, 16)
    np.testing.assert_array_equal(p[:9, :10], g)
    np.testing.assert_array_equal(p[9:, :10], np.repeat(g[-1:], 7, axis=0))  # last row repeated
    np.testing.assert_array_equal(p[:9, 10:], np.repeat(g[:, -1:], 6, axis=1))  # last column repeated
    assert (p[9:, 10:] == g[-1, -1]).all()
    V = block_importance(g)
    assert V.shape == (2, 2) == num_blocks(9, 10)
    assert V[0, 0] == g[:8, :8].sum()
    assert V[1, 1] == 8 * (g[8, 8] + 7 * g[8, 9])  # one real row, two real columns, the rest copies


@pytest.mark.parametrize("hw", [(1, 1), (7, 9), (8, 8), (9, 8), (512, 768), (17, 1)])
def test_block_count_is_ceil(hw):
    V = block_importance(np.ones(hw))
    assert V.shape == (math.ceil(hw[0] / 8), math.ceil(hw[1] / 8))
    assert upsample_blocks(V, *hw).shape == hw


def test_zero_importance_gives_uniform_levels_not_nan():
    L = semantic_levels(block_importance(np.zeros((20, 30))))
    assert np.isfinite(L).all()
    np.testing.assert_allclose(L, 1.0 / L.size)


def test_tiny_region_of_interest_still_keeps_the_mean():
    g = np.zeros((64, 64))
    g[:8, :8] = 1.0  # one block of 64 is important, the rest is zero
    T = target_levels(block_importance(g), 3.0, (0.25, 4.0))
    assert T[0, 0] == 4.0
    assert T.mean() == pytest.approx(3.0)
    assert (T[T != T[0, 0]] < 4.0).all()  # the others share what is left, equally
    assert np.ptp(T.ravel()[1:]) < 1e-12


def test_clipping_redistributes_to_the_unclipped_blocks_in_proportion():
    V = np.array([[100.0, 2.0, 1.0, 1.0]])  # T unclipped = 3.85, 0.077, 0.038, 0.038 at M̄ = 1
    T = water_fill(computed_levels(V, 1.0), 1.0, (0.01, 2.0))
    assert T[0, 0] == 2.0
    assert T[0, 1] == pytest.approx(2 * T[0, 2])  # still proportional to importance
    assert T.mean() == pytest.approx(1.0)


def test_kappa_zero_gives_a_constant_gamma_map():
    a = allocate(np.random.default_rng(0).random((40, 56)), 300.0, kappa=0.0)
    assert a.gamma_map.dtype == np.float32
    assert (a.gamma_map == np.float32(300.0)).all()


def test_gamma_map_follows_the_levels():
    T = np.array([[0.5, 1.0, 2.0]])
    np.testing.assert_allclose(gamma_map(100.0, T, 1.0, 1.0), [[50.0, 100.0, 200.0]], rtol=1e-6)
    np.testing.assert_allclose(gamma_map(100.0, T, 1.0, 2.0), [[25.0, 100.0, 400.0]], rtol=1e-6)
    np.testing.assert_allclose(gamma_map(100.0, 2 * T, 2.0, 0.5), [[100 * 0.5**0.5, 100.0, 100 * 2**0.5]], rtol=1e-6)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), -float("inf")])
def test_bad_gamma_raises(bad):
    with pytest.raises(ValueError, match="gamma"):
        gamma_map(bad, np.ones((2, 2)), 1.0, 1.0)
    with pytest.raises(ValueError, match="gamma"):
        allocate(np.ones((8, 8)), bad)


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_bad_kappa_raises(bad):
    with pytest.raises(ValueError, match="kappa"):
        gamma_map(10.0, np.ones((2, 2)), 1.0, bad)


@pytest.mark.parametrize(
    "mean_level, level_range, words",
    [
        (5.0, (0.25, 4.0), "outside"),
        (0.1, (0.25, 4.0), "outside"),
        (0.0, (0.25, 4.0), "mean_level"),
        (float("nan"), (0.25, 4.0), "mean_level"),
        (1.0, (0.0, 4.0), "lower bound"),
        (1.0, (0.25, float("inf")), "finite"),
        (1.0, (2.0, 0.5), "outside"),
    ],
)
def test_bad_level_settings_raise(mean_level, level_range, words):
    with pytest.raises(ValueError, match=words):
        target_levels(np.ones((2, 2)), mean_level, level_range)


@pytest.mark.parametrize(
    "g, words",
    [(np.ones(5), "2-D"), (-np.ones((4, 4)), "negative"), (np.full((4, 4), np.nan), "NaN"), (np.ones((0, 3)), "empty")],
)
def test_bad_importance_raises(g, words):
    with pytest.raises(ValueError, match=words):
        block_importance(g)


def test_allocation_is_deterministic_and_shows_at_pixel_size():
    g = np.random.default_rng(1).random((30, 41)).astype(np.float32)
    a, b = allocate(g, 64.0), allocate(g, 64.0)
    np.testing.assert_array_equal(a.T, b.T)
    big = a.at_pixels(a.T)
    assert big.shape == (30, 41)
    assert big[0, 0] == a.T[0, 0] and big[29, 40] == a.T[-1, -1] and big[8, 16] == a.T[1, 2]
