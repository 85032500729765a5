"""A Vision Transformer whose every synaptic input is a QCFS code (``docs/transformer-arithmetic.md``, section 5).

The network computes on integer codes, as its spiking form does: each affine
map takes codes in and gives ``z / step + 1/2`` out (a *stage*: weights and
bias in code units), and a :class:`~lava_deploy.qcfs.activation.CodeQCFS`
turns that into the next codes. Products of activations (queries times keys,
attention times values) multiply codes; LayerNorm, softmax and GELU are the
integer functions of :mod:`lava_deploy.network.functions` (the same code the
reference and Lava run), with the float function's gradient passed straight
through. Installing a ``rounding`` (quantization-aware fine-tuning and
conversion do, :mod:`lava_deploy.convert.vit`) replaces each stage's float
weights by their fixed-point values: the network then computes exactly what
its integer spiking form computes.

Tokens are the positions of ``(C, H, W)`` arrays: a token-wise linear map is a
1x1 convolution, the mean over tokens is folded into the head.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lava_deploy.errors import DeployError
from lava_deploy.network import ConvSynapse, DenseSynapse, ProductSynapse, Synapse
from lava_deploy.network import functions
from lava_deploy.network.product import attention_product
from lava_deploy.qcfs.activation import CodeQCFS, popcount


@dataclass
class Stage:
    """One affine map in code units, before rounding: what a spiking layer's synapses and bias compute.

    Attributes:
        weight: ``(out, fan-in)`` code-unit weights (for a product: ``(1,)``, its multiplier).
        bias: code-unit bias, the half step included: ``(out,)`` or ``(out, H, W)``.
        levels: L of the codes it feeds (0: the logits).
        synapse: builds the integer synapse from ``(mantissa, exponent)`` (mantissa shaped like ``weight``).
        ranges: the code range of each operand.
        skip_gain: code-unit gain of an identity shortcut (a residual add), or None.
        skip: builds the shortcut's depthwise synapse from ``(mantissa per channel, exponent)``.
        skip_range: the shortcut source's code range.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    levels: int
    synapse: Callable[[np.ndarray, int], Synapse]
    ranges: list[tuple[int, int]]
    skip_gain: Optional[torch.Tensor] = None
    skip: Optional[Callable[[np.ndarray, int], Synapse]] = None
    skip_range: tuple[int, int] = (0, 0)


@dataclass
class StageValues:
    """What the forward pass uses for a stage: weights, bias and shortcut gain in code units."""

    weight: torch.Tensor
    bias: torch.Tensor
    skip_gain: Optional[torch.Tensor] = None


class _CodeUnit(nn.Module):
    """An integer function unit whose output codes are spikes: counts them as a QCFS layer does (no gradient)."""

    emits = True

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.levels = levels
        self.count_spikes = False
        self.spike_count: Optional[torch.Tensor] = None

    def _counted(self, codes: torch.Tensor) -> torch.Tensor:
        if self.count_spikes:
            self.spike_count = popcount(codes.detach().abs()).sum().to(codes.dtype) / len(codes)
        return codes


class CodeLayerNorm(_CodeUnit):
    """``functions.layernorm_codes`` forward; LayerNorm's gradient (gain G times the normalized input) backward."""

    def __init__(self, levels: int, gain: int) -> None:
        super().__init__(levels)
        self.gain = gain

    def forward(self, codes: torch.Tensor) -> torch.Tensor:  # noqa: D102
        exact = functions.layernorm_codes(codes.detach().to(torch.int64).numpy(), self.gain, self.levels)
        mean, var = codes.mean(dim=1, keepdim=True), codes.var(dim=1, keepdim=True, unbiased=False)
        smooth = torch.clamp(self.gain * (codes - mean) / torch.sqrt(var + 1e-6), -self.levels, self.levels)
        return self._counted(smooth + (torch.from_numpy(exact).to(codes.dtype) - smooth).detach())


class CodeSoftmax(_CodeUnit):
    """``functions.softmax_codes`` forward over each head's keys; K times softmax's gradient backward.

    Args:
        levels: L of the attention codes.
        gain: K, the code of probability 1.
        heads: channel groups.
    """

    def __init__(self, levels: int, gain: int, heads: int) -> None:
        super().__init__(levels)
        self.gain, self.heads = gain, heads

    def forward(self, scores: torch.Tensor, step: torch.Tensor) -> torch.Tensor:  # noqa: D102
        table = functions.exp_table(float(step), self.levels)
        exact = functions.softmax_codes(scores.detach().to(torch.int64).numpy(), table, self.gain, self.levels,
                                        self.heads)
        n, channels, height, width = scores.shape
        grouped = (scores * step).reshape(n, self.heads, channels // self.heads, height * width)
        smooth = torch.clamp(self.gain * torch.softmax(grouped, dim=2).reshape(scores.shape), 0, self.levels)
        return self._counted(smooth + (torch.from_numpy(exact).to(scores.dtype) - smooth).detach())


class Block(nn.Module):
    """A pre-norm Transformer block: ``r + attention(LN(r))``, then ``r + MLP(LN(r))`` with GELU."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, levels: int, norm_gain: int, softmax_gain: int) -> None:
        super().__init__()
        self.norm1 = CodeLayerNorm(levels, norm_gain)
        self.qkv = nn.ModuleList(nn.Linear(dim, dim) for _ in range(3))
        self.q_act, self.k_act, self.v_act = (CodeQCFS(levels, 2.0) for _ in range(3))
        self.score_act = CodeQCFS(levels, 4.0, emits=False)     # the softmax unit's input codes
        self.softmax = CodeSoftmax(levels, softmax_gain, heads)
        self.mix_act = CodeQCFS(levels, 1.0)
        self.proj = nn.Linear(dim, dim)
        self.attn_act = CodeQCFS(levels, 4.0)           # the residual stream after attention
        self.norm2 = CodeLayerNorm(levels, norm_gain)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.hidden_act = CodeQCFS(levels, 3.0, emits=False)    # the GELU lookup unit's input codes
        self.gelu_act = CodeQCFS(levels, 3.0)
        self.fc2 = nn.Linear(mlp_dim, dim)
        self.mlp_act = CodeQCFS(levels, 4.0)            # the residual stream after the MLP
        self.heads = heads


class VisionTransformer(nn.Module):
    """Patch embedding (+ position embedding), pre-norm blocks, a final LayerNorm, mean over tokens, linear head.

    Args:
        input_shape: ``(C, H, W)``.
        num_classes: logits.
        levels: L of every code (2**T - 1).
        patch: patch side (divides H and W).
        dim, depth, heads, mlp_dim: width, blocks, attention heads, MLP width.
        input_bits: the input codes' bits (a pixel is ``k / (2**B - 1)``).
        softmax_gain: K, the attention code of probability 1 (default L + 1).
        norm_gain: G, the LayerNorm code of one standard deviation (default (L + 1) / 4, at least 1).
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, levels: int, patch: int = 7, dim: int = 64,
                 depth: int = 2, heads: int = 4, mlp_dim: int = 128, input_bits: int = 8,
                 softmax_gain: Optional[int] = None, norm_gain: Optional[int] = None) -> None:
        super().__init__()
        channels, height, width = (int(s) for s in input_shape)
        if height % patch or width % patch:
            raise DeployError(f"patch {patch} does not divide the {height}x{width} image")
        if dim % heads:
            raise DeployError(f"{heads} heads do not divide the width {dim}")
        self.input_shape, self.levels, self.patch, self.heads = (channels, height, width), levels, patch, heads
        self.grid = (height // patch, width // patch)
        self.input_bits = input_bits
        self.softmax_gain = softmax_gain or levels + 1
        self.norm_gain = norm_gain or max(1, (levels + 1) // 4)
        self.embed = nn.Linear(channels * patch * patch, dim)
        self.position = nn.Parameter(torch.randn(dim, *self.grid) * 0.02)
        self.embed_act = CodeQCFS(levels, 4.0)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_dim, levels, self.norm_gain, self.softmax_gain)
                                    for _ in range(depth))
        self.norm = CodeLayerNorm(levels, self.norm_gain)
        self.head = nn.Linear(dim, num_classes)
        #: Stage -> the values the forward pass uses (None: the float ones); see :mod:`lava_deploy.convert.vit`.
        self.rounding: Optional[Callable[[Stage], StageValues]] = None

    @property
    def tokens(self) -> int:
        """Patches."""
        return self.grid[0] * self.grid[1]

    @property
    def token_shape(self) -> tuple[int, int, int]:
        """``(dim, H / patch, W / patch)``: the residual stream's array of tokens."""
        return (self.head.in_features, *self.grid)

    # ---- stages: each affine map in code units ------------------------------------------------------------

    def _linear_stage(self, linear: nn.Linear, in_step: torch.Tensor, out: CodeQCFS, source_range: tuple[int, int],
                      skip_from: Optional[CodeQCFS] = None) -> Stage:
        """A token-wise linear map (a 1x1 convolution), optionally plus the identity of ``skip_from``'s codes."""
        shape = (linear.in_features, *self.grid)
        out_shape = (linear.out_features, *self.grid)
        stage = Stage(linear.weight * (in_step / out.step), linear.bias / out.step + 0.5, out.levels,
                      lambda m, e: ConvSynapse(m.reshape(*m.shape, 1, 1), e, shape), [source_range])
        if skip_from is not None:
            stage.skip_gain, stage.skip_range = skip_from.step / out.step, (skip_from.low, skip_from.levels)
            stage.skip = lambda m, e: ConvSynapse(m.reshape(-1, 1, 1, 1), e, out_shape, groups=out_shape[0])
        return stage

    def _product_stage(self, multiplier: torch.Tensor, out: CodeQCFS, mode: str, a_shape: tuple, b_shape: tuple,
                       ranges: list[tuple[int, int]]) -> Stage:
        out_channels = self.heads * self.tokens if mode == "scores" else b_shape[0]
        return Stage(multiplier.reshape(1), torch.full((out_channels,), 0.5), out.levels,
                     lambda m, e: ProductSynapse(m, e, a_shape, b_shape, mode, self.heads), ranges)

    def stages(self) -> dict[str, Stage]:
        """Every affine map by name (``embed``, ``block{b}.{q,k,v,scores,mix,proj,fc1,fc2}``, ``head``)."""
        L, G, K = self.levels, float(self.norm_gain), float(self.softmax_gain)
        signed, norm_range = (-L, L), (-L, L)
        pixel_step = torch.tensor(1.0 / ((1 << self.input_bits) - 1))
        shape = self.token_shape
        patch_shape = (self.input_shape[0], self.patch, self.patch)
        out = {"embed": Stage(self.embed.weight * (pixel_step / self.embed_act.step),
                              (self.embed.bias.view(-1, 1, 1) + self.position) / self.embed_act.step + 0.5, L,
                              lambda m, e: ConvSynapse(m.reshape(-1, *patch_shape), e, self.input_shape,
                                                       stride=(self.patch, self.patch)),
                              [(0, (1 << self.input_bits) - 1)])}
        residual = self.embed_act
        for b, block in enumerate(self.blocks):
            name = f"block{b}."
            norm_step = torch.tensor(1.0 / G)
            for part, linear, act in zip("qkv", block.qkv, (block.q_act, block.k_act, block.v_act)):
                out[name + part] = self._linear_stage(linear, norm_step, act, norm_range)
            head_dim = shape[0] // self.heads
            score = block.q_act.step * block.k_act.step / (math.sqrt(head_dim) * block.score_act.step)
            out[name + "scores"] = self._product_stage(score, block.score_act, "scores", shape, shape,
                                                       [signed, signed])
            attention_shape = (self.heads * self.tokens, *self.grid)
            out[name + "mix"] = self._product_stage(block.v_act.step / (K * block.mix_act.step), block.mix_act,
                                                    "mix", attention_shape, shape,
                                                    [(0, min(L, self.softmax_gain)), signed])
            out[name + "proj"] = self._linear_stage(block.proj, block.mix_act.step, block.attn_act, signed, residual)
            out[name + "fc1"] = self._linear_stage(block.fc1, norm_step, block.hidden_act, norm_range)
            out[name + "fc2"] = self._linear_stage(block.fc2, block.gelu_act.step, block.mlp_act, signed,
                                                   block.attn_act)
            residual = block.mlp_act
        spread = (self.head.weight / (self.tokens * G)).repeat_interleave(self.tokens, dim=1)
        out["head"] = Stage(spread, self.head.bias, 0, lambda m, e: DenseSynapse(m, e, shape), [norm_range])
        return out

    def gelu_table(self, block: Block) -> np.ndarray:
        """GELU as a lookup table: the code of GELU(c s_in) at the output step, for each input code c."""
        with torch.no_grad():
            codes = torch.arange(-self.levels, self.levels + 1, dtype=torch.float32)
            return self._gelu_codes(block, codes).to(torch.int64).numpy()

    def _gelu_codes(self, block: Block, codes: torch.Tensor) -> torch.Tensor:
        return block.gelu_act(F.gelu(codes * block.hidden_act.step) / block.gelu_act.step + 0.5)

    # ---- forward -------------------------------------------------------------------------------------------

    def _values(self, stage: Stage) -> StageValues:
        return self.rounding(stage) if self.rounding is not None else StageValues(stage.weight, stage.bias,
                                                                                stage.skip_gain)

    @staticmethod
    def _tokenwise(values: StageValues, codes: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``w k + b`` per token (a matrix product: exact sums), plus the shortcut's gain times its codes."""
        z = torch.einsum("oc,nchw->nohw", values.weight, codes) + values.bias.view(-1, 1, 1)
        return z if skip is None else z + values.skip_gain * skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        stages = {name: self._values(stage) for name, stage in self.stages().items()}
        top = (1 << self.input_bits) - 1
        codes = torch.floor(x * top + 0.5)             # the input codes the spiking network receives
        patches = F.unfold(codes, self.patch, stride=self.patch)          # (N, C p p, tokens)
        embed = stages["embed"]
        z = (embed.weight @ patches).reshape(len(x), -1, *self.grid) + embed.bias
        r = self.embed_act(z)
        for b, block in enumerate(self.blocks):
            v = {part: stages[f"block{b}.{part}"] for part in ("q", "k", "v", "scores", "mix", "proj", "fc1", "fc2")}
            y = block.norm1(r)
            q, k, val = (act(self._tokenwise(v[part], y)) for part, act in
                         zip("qkv", (block.q_act, block.k_act, block.v_act)))
            scores = block.score_act(attention_product("scores", self.heads, q, k) * v["scores"].weight
                                     + v["scores"].bias.view(-1, 1, 1))
            attention = block.softmax(scores, block.score_act.step.detach())
            mixed = block.mix_act(attention_product("mix", self.heads, attention, val) * v["mix"].weight
                                  + v["mix"].bias.view(-1, 1, 1))
            r = block.attn_act(self._tokenwise(v["proj"], mixed, r))
            hidden = block.hidden_act(self._tokenwise(v["fc1"], block.norm2(r)))
            gelu = self._gelu_codes(block, hidden.detach())
            smooth = F.gelu(hidden * block.hidden_act.step) / block.gelu_act.step
            gelu = smooth + (gelu - smooth).detach()
            r = block.mlp_act(self._tokenwise(v["fc2"], gelu, r))
        y = self.norm(r)
        head = stages["head"]
        return y.flatten(1) @ head.weight.T + head.bias


def vit_spec(input_shape: Sequence[int], num_classes: int, input_bits: int) -> dict:
    """The ``vit`` family's description for an input ``(C, H, W)``: 4x4 patches of a square image (16 tokens)."""
    _, height, width = input_shape
    patch = height // 4 if height % 4 == 0 and height == width else 1
    return {"type": "vit", "patch": patch, "dim": 64, "depth": 2, "heads": 4, "mlp": 128, "input_bits": input_bits,
            "classes": num_classes}
