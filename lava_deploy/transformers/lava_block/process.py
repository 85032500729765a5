"""Lava Processes of one converted encoder block (expectation compensation, multi-threshold neurons).

A BERT block as a graph of Processes: multi-threshold neurons, token-wise
dense synapses, products of two spike trains, and compensated non-linear
functions (softmax, LayerNorm, GELU), between a source of embedding currents
and a sink that records the block's output at every step. Residual branches
are second connections into an InPort, which sums them. Every Process runs in
the step it receives (a feed-forward graph: no delay), and forgets its state at
the first step of each sample, so that a stream of samples, ``time_steps``
steps each, is one Lava run.
"""
from __future__ import annotations

import typing as ty

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class EmbeddingSource(AbstractProcess):
    """Sends sample n's embedding current (tokens, hidden) at each of its steps, and its token mask.

    Args:
        inputs_path: .npy of float64 (N, tokens, hidden).
        mask_path: .npy of bool (N, tokens): real tokens.
        time_steps: steps per sample.
    """

    def __init__(self, *, inputs_path: str, mask_path: str, shape: tuple[int, int], time_steps: int,
                 error_dir: ty.Optional[str] = None, name: ty.Optional[str] = None) -> None:
        super().__init__(inputs_path=inputs_path, mask_path=mask_path, time_steps=time_steps, error_dir=error_dir, name=name)
        self.s_out = OutPort(shape=shape)
        self.mask_out = OutPort(shape=(shape[0],))


class MultiThresholdNeuron(AbstractProcess):
    """Signed neurons with ``levels`` thresholds per side, base/2**k; at most one spike per step (as its value).

    Args:
        base: base threshold per neuron, broadcast to ``shape``.
    """

    def __init__(self, *, shape: tuple[int, ...], base: np.ndarray, levels: int, time_steps: int,
                 error_dir: ty.Optional[str] = None, name: ty.Optional[str] = None) -> None:
        super().__init__(shape=shape, levels=levels, time_steps=time_steps, error_dir=error_dir, name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.base = Var(shape=shape, init=np.broadcast_to(base, shape).copy())
        self.v = Var(shape=shape, init=0.0)


class TokenDense(AbstractProcess):
    """A dense synapse applied to every token: current = spikes @ weights.T + bias (bias once per step)."""

    def __init__(self, *, tokens: int, weights: np.ndarray, bias: np.ndarray, error_dir: ty.Optional[str] = None, name: ty.Optional[str] = None) -> None:
        super().__init__(error_dir=error_dir, name=name)
        out_features, in_features = weights.shape
        self.s_in = InPort(shape=(tokens, in_features))
        self.a_out = OutPort(shape=(tokens, out_features))
        self.weights = Var(shape=weights.shape, init=weights)
        self.bias = Var(shape=bias.shape, init=bias)


class SpikeProduct(AbstractProcess):
    """The expectation-compensated product of two spike trains, per attention head.

    ``scores``: A = queries (tokens, hidden), B = keys (tokens, hidden), output (heads, tokens, tokens);
    ``context``: A = probabilities (heads, tokens, tokens), B = values (tokens, hidden), output (tokens, hidden).
    Tracks S_K = S_A S_B^T by K(t) = A B + A S_B(t-1) + S_A(t-1) B, and emits S_K(t)/t - S_K(t-1)/(t-1).
    """

    def __init__(self, *, kind: str, tokens: int, hidden: int, heads: int, time_steps: int,
                 error_dir: ty.Optional[str] = None, name: ty.Optional[str] = None) -> None:
        super().__init__(kind=kind, tokens=tokens, hidden=hidden, heads=heads, time_steps=time_steps, error_dir=error_dir, name=name)
        square, flat = (heads, tokens, tokens), (tokens, hidden)
        self.a_in = InPort(shape=flat if kind == "scores" else square)
        self.b_in = InPort(shape=flat)
        self.a_out = OutPort(shape=square if kind == "scores" else flat)


class CompensatedFunction(AbstractProcess):
    """A non-linear function F with expectation compensation: emits t F(S(t)/t) - (t-1) F(S(t-1)/(t-1)).

    Args:
        kind: ``softmax`` (with ``scale``; uses the token mask on its keys), ``layernorm`` (with ``weight``, ``bias``,
            ``eps``) or ``gelu``.
    """

    def __init__(self, *, kind: str, shape: tuple[int, ...], time_steps: int, scale: float = 1.0,
                 weight: ty.Optional[np.ndarray] = None, bias: ty.Optional[np.ndarray] = None, eps: float = 0.0,
                 error_dir: ty.Optional[str] = None, name: ty.Optional[str] = None) -> None:
        super().__init__(kind=kind, shape=shape, time_steps=time_steps, scale=scale, weight=weight, bias=bias,
                         eps=eps, error_dir=error_dir, name=name)
        self.a_in = InPort(shape=shape)
        self.mask_in = InPort(shape=(shape[-1],) if kind == "softmax" else (shape[0],))     # the token mask
        self.a_out = OutPort(shape=shape)


class StepSink(AbstractProcess):
    """Writes the block's output at every step into a (N, time_steps, tokens, hidden) .npy file."""

    def __init__(self, *, shape: tuple[int, int], record_path: str, time_steps: int,
                 error_dir: ty.Optional[str] = None, name: ty.Optional[str] = None) -> None:
        super().__init__(record_path=record_path, time_steps=time_steps, error_dir=error_dir, name=name)
        self.a_in = InPort(shape=shape)
