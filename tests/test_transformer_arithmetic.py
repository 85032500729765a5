"""docs/transformer-arithmetic.md, sections 1 to 4: signed spikes, the signed emit, the product identity and the
integer function units, exhaustively where the range allows and against stated bounds elsewhere."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from lava_deploy.network.functions import (EXP_BITS, SQRT_BITS, exp_table, isqrt, layernorm_codes, lookup_codes,
                                           round_div, signed_bits, softmax_codes)


def signed_emit(u: np.ndarray, levels: int, scale_exp: int, time_steps: int) -> np.ndarray:
    """Section 2 as written: sign and magnitude register, then the unsigned neuron's threshold subtractions."""
    S = 1 << scale_exp
    sigma = np.where(u >= 0, 1, -1)
    v = np.where(u >= 0, np.minimum(u, levels * S), np.minimum(S - 1 - u, levels * S))
    theta, spikes = 1 << (time_steps - 1 + scale_exp), []
    for j in range(time_steps):
        fired = v >= theta >> j
        v = v - fired * (theta >> j)
        spikes.append(sigma * fired)
    return np.stack(spikes)


def horner(planes) -> np.ndarray:
    total = 0
    for plane in planes:
        total = 2 * total + plane.astype(np.int64)
    return total


@pytest.mark.parametrize("time_steps", range(1, 9))
def test_signed_emit_is_the_clipped_floor(time_steps):
    T = time_steps
    for scale_exp in sorted({T - 1, T + 2}):
        S = 1 << scale_exp
        levels = (1 << T) - 1
        u = np.arange(-(levels + 3) * S - 5, (levels + 3) * S + 6)
        want = np.clip(np.floor_divide(u, S), -levels, levels)
        spikes = signed_emit(u, levels, scale_exp, T)
        np.testing.assert_array_equal(horner(spikes), want)
        np.testing.assert_array_equal(spikes, signed_bits(want, T))


@pytest.mark.parametrize("time_steps", range(1, 9))
def test_signed_spikes_rebuild_every_code_and_every_prefix_is_a_code(time_steps):
    T, levels = time_steps, (1 << time_steps) - 1
    codes = np.arange(-levels, levels + 1)
    planes = signed_bits(codes, T)
    assert set(np.unique(planes)) <= {-1, 0, 1}
    prefix = np.zeros_like(codes)
    for t in range(T):
        prefix = 2 * prefix + planes[t]
        np.testing.assert_array_equal(prefix, np.sign(codes) * (np.abs(codes) >> (T - 1 - t)))
    np.testing.assert_array_equal(prefix, codes)


def product_by_spikes(a_planes, b_planes, bilinear):
    """Section 3: P <- 4P + 2(a B + A b) + a b, A <- 2A + a, B <- 2B + b, plane by plane."""
    A, B = np.zeros(a_planes[0].shape, np.int64), np.zeros(b_planes[0].shape, np.int64)
    P = bilinear(A, B)
    for a, b in zip(a_planes, b_planes):
        P = 4 * P + 2 * (bilinear(a, B) + bilinear(A, b)) + bilinear(a, b)
        A, B = 2 * A + a.astype(np.int64), 2 * B + b.astype(np.int64)
    return P


@pytest.mark.parametrize("time_steps", range(1, 5))
def test_product_identity_for_every_pair_of_codes(time_steps):
    T, levels = time_steps, (1 << time_steps) - 1
    a, b = np.meshgrid(np.arange(-levels, levels + 1), np.arange(-levels, levels + 1))
    got = product_by_spikes(signed_bits(a, T), signed_bits(b, T), lambda x, y: np.asarray(x) * np.asarray(y))
    np.testing.assert_array_equal(got, a * b)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), time_steps=st.integers(1, 8), heads=st.sampled_from([1, 2]))
def test_product_identity_for_attention_scores_and_mixing(seed, time_steps, heads):
    """Both bilinear forms (queries times keys, attention times values), with saturated codes at both ends."""
    rng = np.random.default_rng(seed)
    T, levels = time_steps, (1 << time_steps) - 1
    tokens, width = 5, 3
    q = rng.choice([-levels, levels, 0, 1, -1], size=(2, heads, width, tokens)) if seed % 3 == 0 else \
        rng.integers(-levels, levels + 1, size=(2, heads, width, tokens))
    k = rng.integers(-levels, levels + 1, size=(2, heads, width, tokens))
    p = rng.integers(0, levels + 1, size=(2, heads, tokens, tokens))
    scores = lambda x, y: np.einsum("nhdi,nhdj->nhji", x, y)         # noqa: E731
    mix = lambda x, y: np.einsum("nhji,nhdj->nhdi", x, y)            # noqa: E731
    plane = lambda x: signed_bits(x, T)                               # noqa: E731
    np.testing.assert_array_equal(product_by_spikes(plane(q), plane(k), scores), scores(q, k))
    np.testing.assert_array_equal(product_by_spikes(plane(p), plane(q), mix), mix(p, q))


def test_round_div_is_the_quotient_rounded_half_up():
    a, b = np.meshgrid(np.arange(-300, 301), np.arange(1, 301))
    want = np.vectorize(lambda x, y: math.floor(Fraction(int(x), int(y)) + Fraction(1, 2)))(a, b)
    np.testing.assert_array_equal(round_div(a, b), want)


def test_isqrt_exhaustively_below_2_to_the_20():
    n = np.arange(1 << 20)
    r = isqrt(n)
    assert (r * r <= n).all() and ((r + 1) * (r + 1) > n).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_isqrt_up_to_2_to_the_62(seed):
    rng = np.random.default_rng(seed)
    n = np.concatenate([rng.integers(0, 1 << 62, size=200), rng.integers(0, 1 << 40, size=200)])
    roots = np.array([math.isqrt(int(v)) for v in n])
    np.testing.assert_array_equal(isqrt(n), roots)
    squares = np.array([int(r) * int(r) for r in roots[roots < 1 << 31]], dtype=np.int64)
    np.testing.assert_array_equal(isqrt(squares), roots[roots < 1 << 31])
    np.testing.assert_array_equal(isqrt(np.maximum(squares - 1, 0)), np.maximum(roots[roots < 1 << 31] - 1, 0))
    with pytest.raises(ValueError):
        isqrt(np.array([1 << 62]))


def _random_scores(rng, levels, groups, keys, queries=3, n=4):
    return rng.integers(-levels, levels + 1, size=(n, groups * keys, queries, 1))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), time_steps=st.integers(2, 6), keys=st.integers(1, 20),
       step=st.floats(0.02, 2.0), gain_shift=st.integers(0, 2))
def test_softmax_codes_are_within_the_stated_bound(seed, time_steps, keys, step, gain_shift):
    rng = np.random.default_rng(seed)
    levels = (1 << time_steps) - 1
    gain, groups = (levels + 1) << gain_shift, 2
    z = _random_scores(rng, levels, groups, keys)
    table = exp_table(step, levels)
    q = softmax_codes(z, table, gain, levels, groups)
    assert q.min() >= 0 and q.max() <= min(levels, gain)
    zg = z.reshape(len(z), groups, keys, -1).astype(np.float64) * step
    p = np.exp(zg - zg.max(axis=2, keepdims=True))
    p = (p / p.sum(axis=2, keepdims=True)).reshape(z.shape)
    margin = gain * (keys + 1) / 2 ** (EXP_BITS + 1)
    unclipped = q < levels
    assert (np.abs(q - gain * p)[unclipped] <= 0.5 + margin + 1e-12).all()
    assert (gain * p[~unclipped] >= levels - 0.5 - margin).all()
    shifted = np.clip(z + 1, -levels, levels)
    same = (shifted - z == 1).reshape(len(z), groups, keys, -1).all(axis=2, keepdims=True)
    same = np.broadcast_to(same, (len(z), groups, keys, z.shape[2])).reshape(z.shape)
    np.testing.assert_array_equal(softmax_codes(shifted, table, gain, levels, groups)[same], q[same])


def test_softmax_codes_grow_with_their_score():
    rng = np.random.default_rng(0)
    levels, table = 15, exp_table(0.4, 15)
    z = _random_scores(rng, levels, 1, 8, n=50)
    q = softmax_codes(z, table, 32, levels, 1)
    raised = z.copy()
    raised[:, 0] = np.minimum(raised[:, 0] + 3, levels)
    assert (softmax_codes(raised, table, 32, levels, 1)[:, 0] >= q[:, 0]).all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), time_steps=st.integers(2, 6), channels=st.integers(2, 96),
       gain=st.integers(1, 16))
def test_layernorm_codes_are_within_the_stated_bound(seed, time_steps, channels, gain):
    rng = np.random.default_rng(seed)
    levels = (1 << time_steps) - 1
    x = rng.integers(-levels, levels + 1, size=(5, channels, 2, 3))
    if seed % 4 == 0:
        x[:, :, 0, 0] = levels          # a position whose channels are all equal: zero variance
    y = layernorm_codes(x, gain, levels)
    xf = x.astype(np.float64)
    sd = xf.std(axis=1, keepdims=True)
    exact = np.where(sd > 0, gain * (xf - xf.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1), 0)
    margin = 0.5 + gain * math.sqrt(channels - 1) / 2 ** SQRT_BITS
    inside = np.abs(y) < levels
    assert (np.abs(y - exact)[inside] <= margin + 1e-9).all()
    assert (np.sign(y[~inside]) * exact[~inside] >= levels - margin - 1e-9).all()
    assert (y[sd.repeat(channels, axis=1) == 0] == 0).all()
    np.testing.assert_array_equal(layernorm_codes(x + 3, gain, levels), y)
    mirrored = layernorm_codes(-x, gain, levels)        # -y but for halves, which round up either way
    assert (np.abs(mirrored + y) <= 1).all() and (mirrored + y >= 0).all()


def test_lookup_codes_index_the_table_by_code():
    levels = 7
    table = np.arange(2 * levels + 1) * 3 - 5
    codes = np.arange(-levels - 2, levels + 3)
    np.testing.assert_array_equal(lookup_codes(codes, table, levels), table[np.clip(codes, -levels, levels) + levels])


def test_exp_table_refuses_a_scale_that_is_not_a_positive_number():
    assert exp_table(0.5, 3)[0] == 1 << EXP_BITS and len(exp_table(0.5, 3)) == 7
    for step in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            exp_table(step, 3)
