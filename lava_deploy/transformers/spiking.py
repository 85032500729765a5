"""The two training-free conversions, simulated one time step at a time, batched.

Both read every site of the encoder (:mod:`lava_deploy.transformers.encoder`)
as a spiking module with state, advanced once per step for the whole batch:
no loop over neurons, one Python pass over the layers per step.

**Expectation compensation with multi-threshold neurons** (``ec``):

* a neuron has ``levels`` thresholds on each side, the base threshold ``lam``
  (the 99th percentile of its activation) halved ``levels - 1`` times; at each
  step it integrates its input, fires at most one spike, the largest level not
  above its potential's magnitude (the smallest from half of it, rounding),
  with its sign, and subtracts it (:func:`multi_threshold_fire`);
* a non-linear function F receives the running sum S(t) of its input and emits
  t F(S(t)/t) - (t-1) F(S(t-1)/(t-1)): its outputs sum to t F(mean input);
* the product of two spike trains A, B tracks S_K(t) = S_A(t) S_B(t)^T with
  additions only, K(t) = A(t) B(t)^T + A(t) S_B(t-1)^T + S_A(t-1) B(t)^T, and
  emits S_K(t)/t - S_K(t-1)/(t-1).

**Spatio-temporal approximation** (``sta``):

* neurons are signed integrate-and-fire neurons with one threshold (the same
  rule with one level);
* each elementwise non-linear piece (GELU, exp, reciprocal, square, rsqrt)
  is a universal group operator: a group of ``group_size`` neurons whose
  summed response is a piecewise-linear function, half of its knots spread
  along the function's curve over the range observed in calibration, half
  where the calibration inputs lie (weighted by the curvature), fitted by least
  squares on sampled inputs of that range (no training, no data beyond the
  range) (:class:`NeuronGroup`). Softmax and LayerNorm are composed of these
  pieces, sums and products; the group reads the running input estimate and
  its output is corrected at each step so that the outputs sum to t F(mean);
* temporally corrective attention: the product of spike trains Q, K is
  estimated at step t from the new query spikes and the keys' running mean,
  q(t) Kbar(t)^T, and corrected for the earlier queries,
  S_Q(t-1) (Kbar(t) - Kbar(t-1))^T.

The output at step T of either method depends only on steps 1..T, so one run
of 16 steps gives every T from 1 to 16.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from lava_deploy.errors import DeployError
from lava_deploy.transformers.encoder import PIECES, Ops, Piece, exact_piece
from lava_deploy.transformers.ops import FUNCTION_COST, count, product_sizes

METHODS = ("ec", "sta")
#: Energy per operation (pJ, 45 nm, 32-bit float; Horowitz 2014), as the conversion papers count it.
ENERGY_MAC_PJ, ENERGY_AC_PJ = 4.6, 0.9
#: Pieces that are linear beyond their range (GELU); the others are held at the range's ends.
_EXTRAPOLATE = ("gelu",)
#: Spatio-temporal approximation: (multiplications, group evaluations, additions) per element of each function,
#: besides the two multiplications of the temporal correction.
STA_FUNCTION_COST = {"gelu": (0, 1, 0), "softmax": (1, 2, 2), "layernorm": (2, 1, 3)}


#: Integer view and exponent-field mask of each float type (IEEE 754).
_EXPONENT_BITS = {torch.float32: (torch.int32, 0x7F800000), torch.float64: (torch.int64, 0x7FF0000000000000)}


def multi_threshold_fire(potential: torch.Tensor, base: torch.Tensor, levels: int) -> torch.Tensor:
    """One step's spikes (as values) of signed neurons with thresholds base, base/2, ..., base/2**(levels-1).

    A neuron fires the largest level not above ``|potential|`` (``base`` itself above it), with the potential's
    sign; the smallest level fires from half its value on (rounding), nothing below.
    """
    ratio = potential.abs() / base
    # The largest power of two not above the ratio: its float with the mantissa bits cleared (exact).
    bits, exponent_mask = _EXPONENT_BITS[ratio.dtype]
    level = (ratio.view(bits) & exponent_mask).view(ratio.dtype).clamp(2.0 ** (1 - levels), 1.0)
    return torch.where(ratio >= 2.0 ** -levels, torch.copysign(level * base, potential), 0.0)


@dataclass
class NeuronGroup:
    """A universal group operator: ``len(knots)`` neurons whose summed response is piecewise linear.

    Member j responds with ``slope_j * relu(x - knot_j)``, as the rate of an
    integrate-and-fire neuron with bias ``-knot_j``; their sum interpolates the
    fitted ``values`` at the knots. Beyond the knots the sum is held (or
    continued linearly for GELU).
    """

    name: str
    knots: torch.Tensor
    values: torch.Tensor

    @classmethod
    def fit(cls, name: str, low: float, high: float, size: int, inputs: Optional[torch.Tensor] = None,
            samples: int = 4096) -> "NeuronGroup":
        """Fit ``size`` neurons to piece ``name`` over [low, high].

        Knots are spread evenly along the function's curve (traced on ``samples`` evenly spaced inputs,
        input and output each scaled to the unit interval), so they crowd where it bends. Given the
        calibration's ``inputs``, half of the knots follow them instead, with density proportional to
        (p f''^2)^(1/5), p the inputs' density and f'' the function's curvature: the spacing that minimises
        the mean squared interpolation error over those inputs. A range stretched by a few outliers (BERT's
        LayerNorm inputs span about [-72, 92] while most lie within a few units of 0) otherwise leaves the
        common small inputs between two distant knots. The values at the knots are the least-squares fit of
        the piecewise-linear sum to the function on inputs sampled inside every interval.
        """
        if not high > low:
            low, high = low - 0.5 * max(abs(low), 1e-3), high + 0.5 * max(abs(high), 1e-3)
        x = torch.linspace(low, high, samples, dtype=torch.float64)
        y = PIECES[name](x)
        span = (y.max() - y.min()).clamp(min=1e-12)
        arc = torch.cat([torch.zeros(1, dtype=x.dtype),
                         torch.hypot(torch.diff(x) / (high - low), torch.diff(y) / span).cumsum(0)])
        on_curve = size if inputs is None or not len(inputs) else max(2, size - size // 2)
        knots = torch.from_numpy(np.interp(np.linspace(0, float(arc[-1]), on_curve), arc.numpy(), x.numpy()))
        if on_curve < size:
            knots = torch.cat([knots, _knots_for_inputs(x, y, inputs, size - on_curve)])
        knots = torch.unique(knots)
        # The least-squares samples: evenly spaced inside every interval between knots, so that each
        # neuron's weight is fitted where it acts, however closely the knots crowd.
        x = torch.cat([torch.linspace(0, 1, 9, dtype=x.dtype)[:-1] * (right - left) + left
                       for left, right in zip(knots[:-1], knots[1:])] + [knots[-1:]])
        values = torch.linalg.lstsq(_hat_basis(x, knots), PIECES[name](x)[:, None]).solution[:, 0]
        return cls(name, knots.float(), values.float())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The group's summed response to inputs ``x``."""
        knots, values = self.knots, self.values
        if self.name not in _EXTRAPOLATE:
            x = x.clamp(float(knots[0]), float(knots[-1]))
        right = torch.searchsorted(knots, x.contiguous()).clamp(1, len(knots) - 1)
        x0, x1, y0, y1 = knots[right - 1], knots[right], values[right - 1], values[right]
        return y0 + (x - x0) * (y1 - y0) / (x1 - x0)


def _knots_for_inputs(x: torch.Tensor, y: torch.Tensor, inputs: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` knots on the grid ``x`` (function values ``y``) with density (p f''^2)^(1/5) for the inputs' p."""
    p = torch.histc(inputs.double().clamp(float(x[0]), float(x[-1])), len(x) - 1, float(x[0]), float(x[-1]))
    curvature = torch.diff(y, 2).abs()
    curvature = torch.maximum(torch.cat([curvature[:1], curvature]), torch.cat([curvature, curvature[-1:]]))
    mass = torch.cat([torch.zeros(1, dtype=x.dtype), (p * curvature ** 2).pow(0.2).cumsum(0)])
    if not mass[-1] > 0:
        return x[[0, -1]]
    return torch.from_numpy(np.interp(np.linspace(0, float(mass[-1]), count), mass.numpy(), x.numpy()))


def _hat_basis(x: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """(samples, knots) weights of each knot's value in the piecewise-linear interpolation at ``x``."""
    right = torch.searchsorted(knots, x).clamp(1, len(knots) - 1)
    frac = ((x - knots[right - 1]) / (knots[right] - knots[right - 1])).clamp(0, 1)
    basis = torch.zeros(len(x), len(knots), dtype=x.dtype)
    rows = torch.arange(len(x))
    basis[rows, right - 1] = 1 - frac
    basis[rows, right] += frac
    return basis


@dataclass
class StepCounts:
    """Per site and step: spikes fired, additions and multiplications, summed over the batch's real tokens."""

    steps: int
    spikes: dict[str, np.ndarray] = field(default_factory=dict)
    adds: dict[str, np.ndarray] = field(default_factory=dict)
    mults: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, np.ndarray] = field(default_factory=dict)     # "wall" and "cpu" time of each step

    def add(self, kind: str, site: str, step: int, value: float) -> None:
        """Add ``value`` to ``kind``'s count of ``site`` at ``step`` (1-based)."""
        table = getattr(self, kind)
        if site not in table:
            table[site] = np.zeros(self.steps)
        table[site][step - 1] += value

    def merge(self, other: "StepCounts") -> None:
        """Add another batch's counts."""
        for kind in ("spikes", "adds", "mults", "seconds"):
            mine = getattr(self, kind)
            for site, values in getattr(other, kind).items():
                mine[site] = mine.get(site, np.zeros(self.steps)) + values


class SpikingOps(Ops):
    """One time step of a converted network: every site's state, advanced by one forward pass.

    Args:
        method: ``ec`` or ``sta``.
        thresholds: base threshold per neuron site (broadcastable to its activation).
        levels: thresholds per side (``ec``; ``sta`` uses one).
        groups: fitted neuron groups per ``site.piece`` (``sta``).
        group_size: neurons per group (``sta``; for the operation counts).
    """

    def __init__(self, method: str, thresholds: dict[str, torch.Tensor], levels: int = 8,
                 groups: Optional[dict[str, NeuronGroup]] = None, group_size: int = 0) -> None:
        if method not in METHODS:
            raise DeployError(f"unknown conversion method '{method}' (choose from {', '.join(METHODS)})")
        self.method, self.levels = method, (levels if method == "ec" else 1)
        self.thresholds = {site: lam.clamp(min=1e-8) for site, lam in thresholds.items()}
        self.groups, self.group_size = groups or {}, group_size
        self.start(1)

    def start(self, steps: int) -> None:
        """Forget all state; count ``steps`` steps from now."""
        self.t, self.state, self.counts = 0, {}, StepCounts(steps)

    def step(self) -> None:
        """Advance the clock before a forward pass."""
        self.t += 1

    def neuron(self, site, x, valid, channel_dims):
        if site not in self.thresholds:
            raise DeployError(f"no threshold for neuron site '{site}': calibrate on this model first")
        potential = self.state.get(("neuron", site), 0) + x      # a function may share the site's name
        spikes = multi_threshold_fire(potential, self.thresholds[site], self.levels)
        self.state[("neuron", site)] = potential - spikes
        self.counts.add("spikes", site, self.t, float(torch.count_nonzero(spikes * valid)))
        return spikes

    def linear(self, site, x, layer, valid):
        # A spike adds its column of weights (pre-scaled by its level: parallel parameter normalization);
        # the bias arrives once per step.
        events = float(torch.count_nonzero(x * valid)) + count(valid, x[..., :1])
        self.counts.add("adds", site, self.t, events * layer.out_features)
        return layer(x)

    def product(self, site, a, b, valid_a, valid_b):
        t = self.t
        rows, cols, inner = product_sizes(a, b, valid_a, valid_b)
        events_a = ((a != 0) & valid_a).flatten(-2).sum(-1).to(a.dtype)
        state = self.state.setdefault(site, {})
        if self.method == "ec":
            sum_a, sum_b = state.get("a", torch.zeros_like(a)), state.get("b", torch.zeros_like(b))
            new = a @ b + a @ sum_b + sum_a @ b
            state["k"] = state.get("k", 0) + new
            state["a"], state["b"] = sum_a + a, sum_b + b
            cumulative = state["k"] / t
            fired_a, fired_b = ((a != 0) & valid_a).to(a.dtype), ((b != 0) & valid_b).to(a.dtype)
            # Spike pairs meeting in A(t) B(t)^T: per inner index, A's spikes in that column times B's in that row.
            pairs = (fired_a.sum(-2) * fired_b.sum(-1)).sum()
            events_b = fired_b.flatten(-2).sum(-1)
            self.counts.add("adds", site, t, float(pairs + (events_a * cols).sum() + (events_b * rows).sum()))
            self.counts.add("mults", site, t, float(2 * (rows * cols).sum()))
            out = cumulative - state.get("out", 0)
            state["out"] = cumulative
            return out
        mean_b = state.get("mean_b", torch.zeros_like(b))
        new_mean = mean_b + (b - mean_b) / t
        out = a @ new_mean
        if "a" in state:
            out = out + state["a"] @ (new_mean - mean_b)
            self.counts.add("mults", site, t, float((rows * cols * inner).sum()))
        state["a"], state["mean_b"] = state.get("a", 0) + a, new_mean
        self.counts.add("adds", site, t, float((events_a * cols).sum()))
        self.counts.add("mults", site, t, float((cols * inner).sum()))     # the running mean's update
        return out

    def function(self, site, kind, x, valid, apply):
        t = self.t
        state = self.state.setdefault(site, {})
        state["sum"] = state.get("sum", 0) + x
        cumulative = t * apply(state["sum"] / t, self._piece(site))
        out = cumulative - state.get("out", 0)
        state["out"] = cumulative
        elements = count(valid, x)
        if self.method == "ec":
            mults, adds = FUNCTION_COST[kind]
            self.counts.add("mults", site, t, (mults + 2) * elements)
        else:
            mults, groups, adds = STA_FUNCTION_COST[kind]
            self.counts.add("mults", site, t, (mults + 2) * elements)
            adds += groups * self.group_size
        self.counts.add("adds", site, t, adds * elements)
        return out

    def _piece(self, site: str) -> Piece:
        if self.method == "ec":
            return exact_piece

        def piece(name: str, x: torch.Tensor) -> torch.Tensor:
            key = f"{site}.{name}"
            if key not in self.groups:
                raise DeployError(f"no neuron group for '{key}': calibrate on this model first")
            return self.groups[key](x)
        return piece
