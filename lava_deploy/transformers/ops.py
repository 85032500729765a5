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
    function, the range of its inputs (for fitting neuron groups to it).
    """

    def __init__(self, calibrate: bool = False, seed: int = 0) -> None:
        self.calibrate = calibrate
        self.macs: dict[str, float] = defaultdict(float)
        self.adds: dict[str, float] = defaultdict(float)
        self.samples: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.ranges: dict[str, list[float]] = {}
        self.generator = torch.Generator().manual_seed(seed)

    def neuron(self, site, x, valid, channel_dims):
        if self.calibrate:
            dims = [d % x.dim() for d in channel_dims]
            rest = [d for d in range(x.dim()) if d not in dims]
            rows = x.abs().permute(*rest, *dims).reshape(-1, *[x.shape[d] for d in dims])
            keep = valid.expand_as(x).permute(*rest, *dims).reshape(rows.shape).flatten(1).all(1)
            rows = rows[keep]
            if len(rows) > CALIBRATION_ROWS:
                rows = rows[torch.randperm(len(rows), generator=self.generator)[:CALIBRATION_ROWS]]
            self.samples[site].append(rows.half())      # half precision: the percentiles need 3 digits
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
        return apply(x, self._recording(site) if self.calibrate else exact_piece)

    def _recording(self, site: str) -> Piece:
        """The exact pieces, widening each one's recorded input range."""
        def piece(name: str, x: torch.Tensor) -> torch.Tensor:
            key = f"{site}.{name}"
            low, high = (float(v) for v in torch.aminmax(x))
            old = self.ranges.get(key, [low, high])
            self.ranges[key] = [min(old[0], low), max(old[1], high)]
            return exact_piece(name, x)
        return piece

    def thresholds(self, percentile: float) -> dict[str, torch.Tensor]:
        """Per neuron site, the ``percentile`` of each neuron's absolute activation, shaped to broadcast."""
        out = {}
        for site, chunks in self.samples.items():
            rows = torch.cat(chunks)
            if len(rows) > CALIBRATION_ROWS:
                rows = rows[torch.randperm(len(rows), generator=self.generator)[:CALIBRATION_ROWS]]
            values = np.percentile(rows.flatten(1).float().numpy(), percentile, axis=0)
            out[site] = torch.as_tensor(values, dtype=torch.float32).reshape(self.shapes[site])
        return out

    def total_macs(self) -> float:
        """All MACs counted so far (matrix products and non-linear functions' multiplications)."""
        return sum(self.macs.values())
