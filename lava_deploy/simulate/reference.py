"""The integer reference: exact, batched PyTorch model of the spiking network.

Two modes share one synapse function:

* code level (spec section 3): ``k_l = clip(floor((w k_{l-1} + b) / S), 0, L)``;
* spike level (spec section 4): the accumulate-then-emit neuron step by step,
  returning every layer's spikes per time step.

Arithmetic is on floats holding integers: float32 when every layer has
24-bit headroom (every potential, product and partial sum is then an integer
below 2**24, exact; see :func:`synaptic_input`), else float64 (exact below
2**53). No Lava import here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from lava_deploy.convert.network import SkipInput, SpikingLayer, SpikingNetwork, encode_input_digits


@dataclass
class ReferenceResult:
    """What the reference computed for a batch of samples.

    Attributes:
        logits: int64 ``(N, classes)``, the readout layer's potentials.
        codes: per hidden layer, int64 ``(N, C, H, W)`` activation codes.
        spikes: per hidden layer, bool ``(N, T, C, H, W)`` (spike mode only).
    """

    logits: np.ndarray
    codes: list[np.ndarray]
    spikes: Optional[list[np.ndarray]] = None

    @property
    def predictions(self) -> np.ndarray:
        """argmax of the logits (first index on ties, as every backend does)."""
        return self.logits.argmax(axis=1)

    def spikes_per_layer(self) -> np.ndarray:
        """Mean spikes per sample in each hidden layer (popcount of the codes)."""
        return np.array([_popcount(c).reshape(len(c), -1).sum(axis=1).mean() for c in self.codes])


def _popcount(codes: np.ndarray) -> np.ndarray:
    codes = codes.astype(np.int64)
    count = np.zeros_like(codes)
    while codes.any():
        count += codes & 1
        codes = codes >> 1
    return count


def synaptic_input(layer: SpikingLayer | SkipInput, x: torch.Tensor, single: bool = False) -> torch.Tensor:
    """Integer synaptic current ``w x`` for a batch ``x`` of shape (N, C, H, W), no bias.

    With ``single``, it runs (and returns) float32, which is exact when the
    layer has 24-bit headroom: every product and every partial sum, in any
    order, is then an integer below 2**24. Only routines that sum products are
    used (oneDNN's direct convolution, or unfold and a matrix product), never
    PyTorch's convolution dispatch, which may pick Winograd or FFT (NNPACK)
    and round. Otherwise float64.
    """
    dtype = torch.float32 if single else torch.float64
    weight = torch.from_numpy(layer.weight).to(dtype)
    x = x.to(dtype)
    if layer.kind == "dense":
        out = (x.reshape(len(x), -1) @ weight.T).reshape(len(x), *layer.output_shape)
    elif single and torch.backends.mkldnn.is_available():
        # oneDNN's direct convolution (PyTorch asks for convolution_direct): products summed, never transformed.
        out = torch.mkldnn_convolution(x.contiguous(), weight.contiguous(), None, layer.padding, layer.stride,
                                       layer.dilation, layer.groups)
    elif single and layer.groups == 1:
        columns = F.unfold(x, weight.shape[2:], dilation=layer.dilation, padding=layer.padding, stride=layer.stride)
        out = (weight.reshape(len(weight), -1) @ columns).reshape(len(x), *layer.output_shape)
    else:
        out = F.conv2d(x.to(torch.float64), weight.to(torch.float64), stride=layer.stride, padding=layer.padding,
                       dilation=layer.dilation, groups=layer.groups)
    return out.to(dtype)


def _bias(layer: SpikingLayer, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(layer.bias).to(dtype).view(1, -1, 1, 1)


def emit(potential: torch.Tensor, layer: SpikingLayer, time_steps: int) -> torch.Tensor:
    """Emit phase: T binary spikes, most significant bit first, from accumulated potentials.

    Clamping to L*S first keeps every code <= L when L < 2**T - 1; negative
    potentials never cross a threshold and saturated ones fire every step.
    Returns bool (T, *potential.shape).
    """
    u = torch.minimum(potential, torch.tensor(float(layer.levels << layer.scale_exp), dtype=potential.dtype))
    theta = layer.threshold(time_steps)
    spikes = []
    for j in range(time_steps):
        theta_j = float(theta >> j)
        s = u >= theta_j
        u = u - s * theta_j
        spikes.append(s)
    return torch.stack(spikes)


def _codes(u: torch.Tensor, layer: SpikingLayer) -> torch.Tensor:
    return torch.clamp(torch.floor(u / float(1 << layer.scale_exp)), 0, layer.levels)


def run_reference(network: SpikingNetwork, input_codes: np.ndarray, spikes: bool = False,
                  batch_size: int = 256,
                  progress: Optional[Callable[[int], None]] = None) -> ReferenceResult:
    """Run the integer reference on input codes ``(N, C, H, W)`` in 0..2**T_in - 1.

    Args:
        network: the converted integer network.
        input_codes: quantized images.
        spikes: also run the neuron step by step and return every spike.
        batch_size: samples per batch (bounds memory).
        progress: called with the number of samples finished after each batch.
    """
    input_codes = np.asarray(input_codes, dtype=np.int64)
    # With 24-bit headroom everywhere, every potential and partial sum is an integer below 2**24: float32 is exact.
    single = min(network.headroom()) >= 0
    parts = []
    with torch.no_grad():
        for start in range(0, len(input_codes), batch_size):
            batch = input_codes[start:start + batch_size]
            parts.append(_run_spikes(network, batch, single) if spikes else _run_codes(network, batch, single))
            if progress:
                progress(len(batch))
    logits = np.concatenate([p.logits for p in parts])
    codes = [np.concatenate([p.codes[i] for p in parts]) for i in range(len(network.layers) - 1)]
    spike_lists = None
    if spikes:
        spike_lists = [np.concatenate([p.spikes[i] for p in parts]) for i in range(len(codes))]
    return ReferenceResult(logits=logits, codes=codes, spikes=spike_lists)


def _run_codes(network: SpikingNetwork, codes: np.ndarray, single: bool) -> ReferenceResult:
    dtype = torch.float32 if single else torch.float64
    k = torch.from_numpy(codes).to(dtype)
    outputs: list[torch.Tensor] = []      # every hidden layer's codes, for the shortcuts
    for layer in network.layers:
        u = synaptic_input(layer, k, single) + _bias(layer, dtype)
        if layer.skip is not None:
            u = u + synaptic_input(layer.skip, outputs[layer.skip.source], single)
        if layer.is_readout:
            logits = u.reshape(len(u), -1)
            break
        k = _codes(u, layer)
        outputs.append(k)
    return ReferenceResult(logits=logits.to(torch.int64).numpy(), codes=[c.to(torch.int64).numpy() for c in outputs])


def _run_spikes(network: SpikingNetwork, codes: np.ndarray, single: bool) -> ReferenceResult:
    T, dtype = network.time_steps, torch.float32 if single else torch.float64
    planes = torch.from_numpy(encode_input_digits(codes, network.input_bits, T)).to(dtype)
    hidden, spike_trains, emitted = [], [], []
    for layer in network.layers:
        # Accumulate phase (Horner): u <- 2^m u + w s_j, most significant plane first.
        u = torch.zeros((len(codes), *layer.output_shape), dtype=dtype)
        for j in range(T):
            u = u * float(1 << layer.accumulate_shift) + synaptic_input(layer, planes[j], single)
            if layer.skip is not None:      # the shortcut's bit j arrives with the main branch's bit j
                u = u + synaptic_input(layer.skip, emitted[layer.skip.source][j], single)
        u = u + _bias(layer, dtype)
        if layer.is_readout:
            logits = u.reshape(len(u), -1)
            break
        s = emit(u, layer, T)                                  # (T, N, C, H, W)
        weights = torch.tensor([1 << (T - 1 - j) for j in range(T)], dtype=dtype)
        hidden.append((s.to(dtype) * weights.view(-1, 1, 1, 1, 1)).sum(0).to(torch.int64).numpy())
        spike_trains.append(s.transpose(0, 1).numpy())
        planes = s.to(dtype)
        emitted.append(planes)
    return ReferenceResult(logits=logits.to(torch.int64).numpy(), codes=hidden, spikes=spike_trains)
