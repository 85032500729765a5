"""Energy and latency per sample, estimated from a simulation's own counts.

The counts are exact for the samples simulated: input and hidden spikes come
from the integer reference (spike for spike what Lava and the chip run), and
every spike is charged one synaptic operation per synapse it reaches, computed
per neuron from the layer's geometry (a conv neuron near the border reaches
fewer). The energies per operation are published figures (see
:mod:`lava_deploy.check.limits`); the ANN beside it is the same network run
densely, one multiply-accumulate per synapse.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from lava_deploy.check.limits import LOIHI_ENERGY, EnergyCosts
from lava_deploy.convert.network import SkipInput, SpikingLayer, SpikingNetwork, encode_input_digits
from lava_deploy.simulate.reference import _popcount, run_reference


@dataclass
class Activity:
    """Operations per sample (means over the simulated samples).

    Attributes:
        samples: how many samples were simulated.
        input_spikes: non-zero input digits (each one graded spike).
        spikes_per_layer: spikes of each hidden layer.
        synaptic_ops_per_layer: synaptic operations into each layer (spikes x synapses reached).
        neuron_updates: neuron state updates: every neuron, every step, T steps per pipelined sample.
        macs: multiply-accumulates of the same network as a dense ANN.
        steps_per_sample, latency_steps: the pipeline's time steps.
    """

    samples: int
    input_spikes: float
    spikes_per_layer: list[float]
    synaptic_ops_per_layer: list[float]
    neuron_updates: int
    macs: int
    steps_per_sample: int
    latency_steps: int

    @property
    def synaptic_ops(self) -> float:
        """All synaptic operations per sample."""
        return float(sum(self.synaptic_ops_per_layer))

    @property
    def spikes(self) -> float:
        """All spike messages per sample, input digits included."""
        return self.input_spikes + float(sum(self.spikes_per_layer))


def fan_out_map(layer: SpikingLayer | SkipInput) -> np.ndarray:
    """Synapses each input neuron of ``layer`` reaches, shaped like its input ``(C, H, W)``."""
    if layer.kind == "dense":
        return np.full(layer.input_shape, layer.num_neurons, dtype=np.float64)
    out_c, in_per_group, kh, kw = layer.weight_mantissa.shape
    ones_out = torch.ones((1, *layer.output_shape), dtype=torch.float64)
    ones_kernel = torch.ones((out_c, in_per_group, kh, kw), dtype=torch.float64)
    reach = torch.nn.grad.conv2d_input((1, *layer.input_shape), ones_kernel, ones_out, stride=layer.stride,
                                       padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    return reach[0].numpy()


def measure_activity(network: SpikingNetwork, codes: np.ndarray) -> Activity:
    """Count spikes, synaptic operations, neuron updates and ANN MACs for input codes ``(N, C, H, W)``."""
    codes = np.asarray(codes, dtype=np.int64)
    n, T = len(codes), network.time_steps
    digits = encode_input_digits(codes, network.input_bits, T)
    per_neuron = [(digits != 0).sum(axis=(0, 1)) / n]                       # input spikes per position
    reference = run_reference(network, codes)
    per_neuron += [_popcount(c).sum(axis=0) / n for c in reference.codes]   # one spike per 1-bit of a code
    synops = [float((counts * fan_out_map(layer)).sum()) for counts, layer in zip(per_neuron, network.layers)]
    for i, layer in enumerate(network.layers):
        if layer.skip is not None:      # the shortcut's source spikes reach these neurons too
            synops[i] += float((per_neuron[layer.skip.source + 1] * fan_out_map(layer.skip)).sum())
    neurons = sum(layer.num_neurons for layer in network.layers)
    return Activity(samples=n, input_spikes=float(per_neuron[0].sum()),
                    spikes_per_layer=[float(c.sum()) for c in per_neuron[1:]], synaptic_ops_per_layer=synops,
                    neuron_updates=neurons * T, macs=sum(layer.num_neurons * synapse.fan_in
                                                             for layer in network.layers
                                                             for synapse in layer.synapses_in),
                    steps_per_sample=network.steps_per_sample, latency_steps=network.latency_steps)


@dataclass
class EnergyEstimate:
    """Energy per sample in nanojoules, split by operation, beside the dense ANN's."""

    activity: Activity
    costs: EnergyCosts
    synaptic_nj: float
    neuron_nj: float
    spike_nj: float
    ann_fp32_nj: float
    ann_int8_nj: float

    @property
    def total_nj(self) -> float:
        """The spiking network's energy per sample."""
        return self.synaptic_nj + self.neuron_nj + self.spike_nj

    def to_dict(self) -> dict:
        """JSON-ready form, counts and costs included."""
        activity = asdict(self.activity)
        activity["synaptic_ops"], activity["spikes"] = self.activity.synaptic_ops, self.activity.spikes
        return {"activity": activity, "costs_pj": asdict(self.costs),
                "energy_nj": {"synaptic": self.synaptic_nj, "neuron_updates": self.neuron_nj, "spikes": self.spike_nj,
                              "total": self.total_nj, "ann_fp32": self.ann_fp32_nj, "ann_int8": self.ann_int8_nj}}


def estimate_energy(activity: Activity, costs: EnergyCosts = LOIHI_ENERGY) -> EnergyEstimate:
    """Charge each counted operation its published energy (pJ), in nJ per sample."""
    return EnergyEstimate(activity, costs,
                          synaptic_nj=activity.synaptic_ops * costs.synaptic_op_pj / 1e3,
                          neuron_nj=activity.neuron_updates * costs.neuron_update_pj / 1e3,
                          spike_nj=activity.spikes * costs.spike_pj / 1e3,
                          ann_fp32_nj=activity.macs * costs.mac_fp32_pj / 1e3,
                          ann_int8_nj=activity.macs * costs.mac_int8_pj / 1e3)
