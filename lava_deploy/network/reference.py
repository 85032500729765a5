"""The integer reference: exact, batched PyTorch model of the spiking network.

Two modes share one synapse function:

* code level: ``k_l = clip(floor((w k_{l-1} + b) / S), 0, L)``;
* spike level: the accumulate-then-emit neuron step by step, returning every
  layer's spikes per time step (``docs/neuron.md``).

Arithmetic is on floats holding integers: float32 when every layer has
24-bit headroom (every potential, product and partial sum is then an integer
below 2**24, exact; see :meth:`Synapse.current`), else float64 (exact below
2**53). No Lava import here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from lava_deploy.network.graph import INPUT, Edge, Layer, SpikingNetwork, encode_input_digits


@dataclass
class ReferenceResult:
    """What the reference computed for a batch of samples.

    Attributes:
        logits: int64 ``(N, classes)``, the readout layer's potentials.
        codes: per hidden layer, int64 ``(N, C, H, W)`` activation codes (negative ones from signed neurons).
        spikes: per hidden layer, ``(N, steps, C, H, W)`` messages (spike mode only): bool spikes
            ``(N, T, ...)`` bit-serial, int8 -1/0/1 from a signed layer, uint8 payloads ``(N, 1, ...)`` graded.
    """

    logits: np.ndarray
    codes: list[np.ndarray]
    spikes: Optional[list[np.ndarray]] = None

    @property
    def predictions(self) -> np.ndarray:
        """argmax of the logits (first index on ties, as every backend does)."""
        return self.logits.argmax(axis=1)

    def messages(self, network: SpikingNetwork) -> list[np.ndarray]:
        """Per hidden layer, the messages (spikes) each neuron sent per sample, ``(N, C, H, W)``: the 1-bits
        of its code when bit-serial, one for a non-zero code when graded (the neuron kind's count)."""
        return [layer.neuron.messages(c) for layer, c in zip(network.layers, self.codes)]

    def spikes_per_layer(self, network: SpikingNetwork) -> np.ndarray:
        """Mean spikes per sample in each hidden layer (of :meth:`messages`)."""
        return np.array([m.reshape(len(m), -1).sum(axis=1).mean() for m in self.messages(network)])


def run_reference(network: SpikingNetwork, input_codes: np.ndarray, spikes: bool = False,
                  batch_size: int = 256,
                  progress: Optional[Callable[[int], None]] = None) -> ReferenceResult:
    """Run the integer reference on input codes ``(N, C, H, W)`` in 0..2**T_in - 1.

    Args:
        network: the converted integer network.
        input_codes: quantized images.
        spikes: also run the neurons step by step and return every spike.
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


def _bias(layer: Layer, dtype: torch.dtype) -> torch.Tensor:
    """The bias, shaped to add to potentials ``(N, C, H, W)``: per channel ``(1, C, 1, 1)`` or per neuron."""
    return torch.from_numpy(layer.bias).to(dtype).view(1, len(layer.bias), *(layer.bias.shape[1:] or (1, 1)))


def _operands(outputs: dict, edge: Edge):
    """What an edge's synapse takes: its source's tensor, or (A, B) for a product."""
    return outputs[edge.source] if edge.operand is None else (outputs[edge.source], outputs[edge.operand])


def _run_codes(network: SpikingNetwork, codes: np.ndarray, single: bool) -> ReferenceResult:
    """Code level: ``k = clip(floor((sum over edges of w k_source + b) / S), 0, L)`` per layer (or the layer's
    function of its input codes, ``docs/transformer-arithmetic.md``)."""
    dtype = torch.float32 if single else torch.float64
    outputs = {INPUT: torch.from_numpy(codes).to(dtype)}
    for i, layer in enumerate(network.layers):
        u = sum(edge.synapse.current(_operands(outputs, edge), single) for edge in layer.inputs) + _bias(layer, dtype)
        outputs[i] = layer.neuron.codes(u)
    hidden = [outputs[i].to(torch.int64).numpy() for i in range(len(network.layers) - 1)]
    return ReferenceResult(logits=outputs[len(network.layers) - 1].to(torch.int64).numpy(), codes=hidden)


def _run_spikes(network: SpikingNetwork, codes: np.ndarray, single: bool) -> ReferenceResult:
    """Spike level: every layer accumulates a sample's planes (Horner, or a product's identity), adds its bias,
    then emits its messages: T bit planes bit-serial (signed ones from signed neurons and function units), one
    graded payload graded."""
    T, steps, dtype = network.time_steps, network.steps_per_sample, torch.float32 if single else torch.float64
    planes = {INPUT: torch.from_numpy(encode_input_digits(codes, network.input_bits, steps)).to(dtype)}
    hidden, spike_trains = [], []
    for i, layer in enumerate(network.layers):
        # Accumulate phase: u <- 2^m u + w s_j per edge, most significant plane first; every edge's plane j of
        # the same sample arrives in the same step (the edges' delays align them), and the neurons sum the edges.
        u = sum(edge.synapse.accumulate(_operands(planes, edge), layer.accumulate_shift, single)
                for edge in layer.inputs)
        u = u + _bias(layer, dtype)
        if layer.is_readout:
            logits = layer.neuron.codes(u)
            break
        s = layer.neuron.spikes(u, T)                                  # (steps, N, C, H, W)
        bits = layer.neuron.message_bits(T)         # the code from its messages, most significant first
        weights = torch.tensor([1 << (bits * (steps - 1 - j)) for j in range(steps)], dtype=dtype)
        hidden.append((s.to(dtype) * weights.view(-1, 1, 1, 1, 1)).sum(0).to(torch.int64).numpy())
        spike_trains.append(s.transpose(0, 1).numpy())
        planes[i] = s.to(dtype)
    return ReferenceResult(logits=logits.to(torch.int64).numpy(), codes=hidden, spikes=spike_trains)
