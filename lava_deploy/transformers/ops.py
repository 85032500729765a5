"""The ANN's sites: exact computation, its operation counts, and calibration of thresholds and ranges.

Operations are counted the way the conversion papers report energy: a
multiply-accumulate (MAC) of the ANN against the spiking network's additions
(AC, a spike adding a weight) and multiplications, over real tokens only.
A non-linear function's element costs :data:`FUNCTION_COST` in the ANN.
"""
from __future__ import annotations

from collections import defaultdict
import numpy as np
import torch

from lava_deploy.transformers.encoder import Ops, Piece, exact_piece

#: (multiplications, additions) per element of each non-linear function in the ANN: GELU one evaluation;
#: softmax exp and the product with the reciprocal, the max subtraction and the sum; LayerNorm square,
#: scaling and gain, the centring, the sum and the offset.
FUNCTION_COST = {"gelu": (1, 0), "softmax": (2, 2), "layernorm": (3, 3)}
#: Most rows of activations kept per site for the percentiles (a random subset beyond it).
CALIBRATION_ROWS = 50_000
#: Most input values kept per non-linear piece for the neuron groups' knots (a random subset beyond it).
PIECE_SAMPLES = 50_000


def count(mask: torch.Tensor, like: torch.Tensor) -> float:
    """Number of entries of ``like`` that ``mask`` (broadcast) selects."""
    return float(mask.expand_as(like).sum())


def product_sizes(a: torch.Tensor, b: torch.Tensor, valid_a: torch.Tensor,
                  valid_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real rows of ``a``, real columns of ``b`` and real inner entries, per matrix of the batch (for ``a @ b``)."""
    rows = valid_a.expand_as(a).any(-1).sum(-1)
    cols = valid_b.expand_as(b).any(-2).sum(-1)
    inner = valid_b.expand_as(b).any(-1).sum(-1)
    return rows.to(a.dtype), cols.to(a.dtype), inner.to(a.dtype)


class AnnOps(Ops):
    """The ANN: every site exact; counts MACs; with ``calibrate``, keeps what the conversions need.

    Calibration records, per neuron site, the absolute activations per neuron (for
    the percentile thresholds), and per elementwise piece of each non-linear
    function, the range of its inputs and a random sample of them (for fitting
    neuron groups to it), real tokens only.
    """

    def __init__(self, calibrate: bool = False, seed: int = 0) -> None:
        self.calibrate = calibrate
        self.macs: dict[str, float] = defaultdict(float)
        self.adds: dict[str, float] = defaultdict(float)
        self.samples: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.ranges: dict[str, list[float]] = {}
        self.inputs: dict[str, list[torch.Tensor]] = defaultdict(list)
        # The pieces' samples draw from their own generator, so that the thresholds do not depend on them.
        self.generator = torch.Generator().manual_seed(seed)
        self.piece_generator = torch.Generator().manual_seed(seed + 1)

    def neuron(self, site, x, valid, channel_dims):
        if self.calibrate:
            dims = [d % x.dim() for d in channel_dims]
            rest = [d for d in range(x.dim()) if d not in dims]
            rows = x.abs().permute(*rest, *dims).reshape(-1, *[x.shape[d] for d in dims])
            keep = valid.expand_as(x).permute(*rest, *dims).reshape(rows.shape).flatten(1).all(1)
            # Half precision: the percentiles need 3 digits.
            self.samples[site].append(_subset(rows[keep], CALIBRATION_ROWS, self.generator).half())
            self.shapes[site] = tuple(x.shape[d] if d in dims else 1 for d in range(x.dim()))
        return x

    def linear(self, site, x, layer, valid):
        self.macs[site] += count(valid, x[..., :1]) * layer.in_features * layer.out_features
        return layer(x)

    def product(self, site, a, b, valid_a, valid_b):
        rows, cols, inner = product_sizes(a, b, valid_a, valid_b)
        self.macs[site] += float((rows * cols * inner).sum())
        return a @ b

    def function(self, site, kind, x, valid, apply):
        elements = count(valid, x)
        mults, adds = FUNCTION_COST[kind]
        self.macs[site] += mults * elements
        self.adds[site] += adds * elements
        return apply(x, self._recording(site, valid) if self.calibrate else exact_piece)

    def _recording(self, site: str, valid: torch.Tensor) -> Piece:
        """The exact pieces, widening each one's recorded input range and sampling its inputs."""
        def piece(name: str, x: torch.Tensor) -> torch.Tensor:
            key = f"{site}.{name}"
            real = x[_reduced(valid, x).expand_as(x)]
            if len(real):
                low, high = (float(v) for v in torch.aminmax(real))
                old = self.ranges.get(key, [low, high])
                self.ranges[key] = [min(old[0], low), max(old[1], high)]
                self.inputs[key].append(_subset(real, PIECE_SAMPLES, self.piece_generator))
            return exact_piece(name, x)
        return piece

    def piece_inputs(self) -> dict[str, torch.Tensor]:
        """Per piece, at most :data:`PIECE_SAMPLES` of its recorded inputs."""
        return {key: _subset(torch.cat(chunks), PIECE_SAMPLES, self.piece_generator)
                for key, chunks in self.inputs.items()}

    def thresholds(self, percentile: float) -> dict[str, torch.Tensor]:
        """Per neuron site, the ``percentile`` of each neuron's absolute activation, shaped to broadcast."""
        out = {}
        for site, chunks in self.samples.items():
            rows = _subset(torch.cat(chunks), CALIBRATION_ROWS, self.generator)
            values = np.percentile(rows.flatten(1).float().numpy(), percentile, axis=0)
            out[site] = torch.as_tensor(values, dtype=torch.float32).reshape(self.shapes[site])
        return out

    def total_macs(self) -> float:
        """All MACs counted so far (matrix products and non-linear functions' multiplications)."""
        return sum(self.macs.values())


def _subset(rows: torch.Tensor, most: int, generator: torch.Generator) -> torch.Tensor:
    """``rows``, or a random ``most`` of them."""
    if len(rows) <= most:
        return rows
    return rows[torch.randperm(len(rows), generator=generator)[:most]]


def _reduced(valid: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``valid`` reduced (any) over the axes where ``x`` has one entry: a mask that broadcasts to ``x``.

    A piece may see a reduction of its function's input (softmax's row sums, LayerNorm's variance).
    """
    for axis in range(x.dim()):
        if x.shape[axis] == 1 and valid.shape[axis] > 1:
            valid = valid.any(axis, keepdim=True)
    return valid
