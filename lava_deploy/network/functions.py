"""The integer functions of a spiking Transformer, defined once (``docs/transformer-arithmetic.md``).

Everything here maps integer codes to integer codes with integer arithmetic
only (numpy int64: additions, multiplications, shifts, floor divisions, table
lookups). The quantized float model calls these functions in its forward pass
(:mod:`lava_deploy.qcfs.vit`), the integer reference calls them per layer, and
Lava's process models call them inside their models, so that training, the
reference and Lava compute the same integers. The only float arithmetic is in
building a table (:func:`exp_table`): once, from a trained scale, and the
table is then stored in the network file as integers.

No torch and no Lava here: numpy alone, so that any backend can call it.
"""
from __future__ import annotations

import math

import numpy as np

#: Bits of precision of the softmax's exponential table: its largest entry is 2**EXP_BITS.
EXP_BITS = 15
#: Extra bits of the LayerNorm's square root: sqrt(V) is taken as isqrt(V * 4**SQRT_BITS) / 2**SQRT_BITS.
SQRT_BITS = 8
#: Largest number isqrt takes (exactness of its 31 digit steps).
ISQRT_LIMIT = 1 << 62


def round_div(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``floor(a / b + 1/2)`` for integers and ``b > 0``: the quotient rounded half up, as ``(2a + b) // 2b``."""
    numerator, denominator = np.asarray(numerator, np.int64), np.asarray(denominator, np.int64)
    return (2 * numerator + denominator) // (2 * denominator)


def isqrt(n: np.ndarray) -> np.ndarray:
    """``floor(sqrt(n))`` for integers ``0 <= n < 2**62``, digit by digit (shifts, additions, comparisons only).

    The binary restoring method: one result bit per step, most significant first (at most 31 steps).
    """
    n = np.asarray(n, np.int64)
    if n.size and (n.min() < 0 or n.max() >= ISQRT_LIMIT):
        raise ValueError(f"isqrt takes integers in 0..2**62 - 1, got {int(n.min())}..{int(n.max())}")
    remainder, root = n.copy(), np.zeros_like(n)
    top = int(n.max()) if n.size else 0
    bit = np.int64(1) << np.int64(max(top.bit_length() - 1, 0) & ~1)     # the largest power of four <= max(n)
    while bit:
        trial = root + bit
        take = remainder >= trial
        remainder = np.where(take, remainder - trial, remainder)
        root = np.where(take, (root >> 1) + bit, root >> 1)
        bit >>= 2
    return root


def signed_bits(codes: np.ndarray, time_steps: int) -> np.ndarray:
    """The T signed spikes of codes in ``[-(2**T - 1), 2**T - 1]``: ``sign(k)`` times bit j of ``|k|``, MSB first.

    Returns int8 ``(T, *codes.shape)`` with values -1, 0, 1; ``sum_j s_j 2**(T-1-j) = k``.
    """
    codes = np.asarray(codes, np.int64)
    magnitude, sign = np.abs(codes), np.sign(codes)
    return np.stack([sign * ((magnitude >> (time_steps - 1 - j)) & 1) for j in range(time_steps)]).astype(np.int8)


def exp_table(step: float, input_levels: int, bits: int = EXP_BITS) -> np.ndarray:
    """``E[d] = floor(2**bits exp(-d step) + 1/2)`` for ``d = 0 .. 2 L``: the softmax's exponential of score gaps.

    The one place with float arithmetic: evaluated once per unit from the trained score step, then stored.
    """
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"the score step must be a positive number, got {step}")
    gaps = np.arange(2 * input_levels + 1, dtype=np.float64)
    return np.floor(np.exp(-gaps * float(step)) * float(1 << bits) + 0.5).astype(np.int64)


def _grouped(x: np.ndarray, groups: int) -> np.ndarray:
    """``(N, C, H, W)`` as ``(N, groups, C / groups, H * W)``: a function of each group at each position."""
    n, channels = x.shape[:2]
    return x.reshape(n, groups, channels // groups, -1)


def softmax_codes(scores: np.ndarray, table: np.ndarray, gain: int, levels: int, groups: int) -> np.ndarray:
    """The softmax unit: codes ``q = min(L, round(gain E[max z - z] / sum E))`` over each channel group.

    Args:
        scores: int codes ``(N, C, H, W)`` in ``[-L_in, L_in]``; the softmax runs over each of ``groups``
            consecutive blocks of channels at every position (a head's keys for one query).
        table: :func:`exp_table`'s ``2 L_in + 1`` entries, ``table[0] > 0``.
        gain: K, the code of probability 1 (a probability p becomes about K p).
        levels: L, the largest output code.
        groups: channel blocks (attention heads).
    """
    z = _grouped(np.asarray(scores, np.int64), groups)
    e = np.asarray(table, np.int64)[z.max(axis=2, keepdims=True) - z]
    return np.minimum(round_div(gain * e, e.sum(axis=2, keepdims=True)), levels).reshape(scores.shape)


def layernorm_codes(x: np.ndarray, gain: int, levels: int, sqrt_bits: int = SQRT_BITS) -> np.ndarray:
    """The LayerNorm unit over the channels at each position: ``clip(round(G n 2**k / isqrt(V 4**k)), -L, L)``.

    With D channels, ``n = D x - sum x`` (D times the deviation from the mean) and ``V = D sum x**2 - (sum x)**2``
    (D**2 times the variance), so ``n / sqrt(V)`` is the normalized value; k = ``sqrt_bits`` extra bits of
    the root. A position whose channels are all equal (V = 0) gives 0. No affine part: the linear layer
    after it absorbs gamma and beta.

    Args:
        x: int codes ``(N, D, H, W)``.
        gain: G, the code of one standard deviation.
        levels: L; codes are clipped to ``[-L, L]``.
    """
    x = np.asarray(x, np.int64)
    d = x.shape[1]
    total, squares = x.sum(axis=1, keepdims=True), (x * x).sum(axis=1, keepdims=True)
    deviation, spread = d * x - total, d * squares - total * total
    root = isqrt(spread << (2 * sqrt_bits))
    y = round_div((gain * deviation) << sqrt_bits, np.maximum(root, 1))
    return np.where(root > 0, np.clip(y, -levels, levels), 0)


def lookup_codes(codes: np.ndarray, table: np.ndarray, input_levels: int) -> np.ndarray:
    """An element-wise function as a table: ``table[k + L_in]`` for codes k in ``[-L_in, L_in]``."""
    return np.asarray(table, np.int64)[np.clip(np.asarray(codes, np.int64), -input_levels, input_levels)
                                       + input_levels]
