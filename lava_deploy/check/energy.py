"""Energy and latency per sample, estimated from a simulation's own counts.

The counts are exact for the samples simulated: input and hidden spikes come
from the integer reference (spike for spike what Lava and the chip run), and
every spike is charged one synaptic operation per synapse it reaches, computed
per neuron from the layer's geometry (a conv neuron near the border reaches
fewer). Bit-serial, a code sends one binary spike per 1-bit; graded, one
graded spike per non-zero code, whatever its payload, each again one
synaptic operation per synapse reached. The energies per operation are
published figures (see :mod:`lava_deploy.check.limits`); the ANN beside it
is the same network run densely, one multiply-accumulate per synapse.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from lava_deploy.check.limits import LOIHI_ENERGY, EnergyCosts
from lava_deploy.network import INPUT, SpikingNetwork, encode_input_digits
from lava_deploy.network.reference import run_reference


@dataclass
class Activity:
    """Operations per sample (means over the simulated samples).

    Attributes:
        samples: how many samples were simulated.
        input_spikes: non-zero input digits (each one graded spike).
        spikes_per_layer: spikes of each hidden layer (binary, or graded: one per non-zero code).
        synaptic_ops_per_layer: synaptic operations into each layer (spikes x synapses reached).
        neuron_updates: neuron state updates: every neuron, every step, T steps per pipelined sample
            bit-serial, one graded.
        unit_operations_per_layer: integer operations of the nodes Loihi 2's neurocores cannot run (products:
            an addition per spike and partner, a multiplication per output; function units: their functions),
            done on embedded cores or the host.
        macs: multiply-accumulates of the same network as a dense ANN.
        steps_per_sample, latency_steps: the pipeline's time steps.
        encoding: ``bit-serial`` or ``graded``.
        payload_bits: bits each spike carries, the input's first, then each hidden layer's (1: binary).
    """

    samples: int
    input_spikes: float
    spikes_per_layer: list[float]
    synaptic_ops_per_layer: list[float]
    neuron_updates: int
    macs: int
    steps_per_sample: int
    latency_steps: int
    encoding: str
    payload_bits: list[int]
    unit_operations_per_layer: list[float] = field(default_factory=list)

    @property
    def synaptic_ops(self) -> float:
        """All synaptic operations per sample."""
        return float(sum(self.synaptic_ops_per_layer))

    @property
    def unit_operations(self) -> float:
        """All embedded-core (or host) operations per sample."""
        return float(sum(self.unit_operations_per_layer))

    @property
    def spikes(self) -> float:
        """All spike messages per sample, input digits included."""
        return self.input_spikes + float(sum(self.spikes_per_layer))


def measure_activity(network: SpikingNetwork, codes: np.ndarray) -> Activity:
    """Count spikes, synaptic operations, neuron updates, off-chip operations and ANN MACs for input codes
    ``(N, C, H, W)``.

    Every spike is charged one synaptic operation per synapse it reaches on every edge out of its node
    (each synapse kind's :meth:`~lava_deploy.network.Synapse.fan_out_map`); the spikes a code makes are
    its neuron kind's count (:meth:`~lava_deploy.network.Neuron.messages`). A spike into a product is
    charged one addition per partner instead, on the product's embedded core, and a function unit its
    function's operations (:meth:`~lava_deploy.network.Neuron.operations`).
    """
    codes = np.asarray(codes, dtype=np.int64)
    n, steps = len(codes), network.steps_per_sample
    digits = encode_input_digits(codes, network.input_bits, steps)
    per_neuron = {INPUT: (digits != 0).sum(axis=(0, 1)) / n}                # input spikes per position
    reference = run_reference(network, codes)
    per_neuron.update({i: m.sum(axis=0) / n for i, m in enumerate(reference.messages(network))})
    synops, unit_ops = [], []
    for layer in network.layers:
        reached = {False: 0.0, True: 0.0}       # by neurocore synapses, by an embedded core
        for edge in layer.inputs:
            for source, fan_out in zip(edge.sources, edge.synapse.fan_out_maps()):
                reached[edge.synapse.off_chip() is not None] += float((per_neuron[source] * fan_out).sum())
        synops.append(reached[False])
        products = layer.num_neurons if layer.synapse.off_chip() is not None else 0     # M P, once per output
        unit_ops.append(reached[True] + products + layer.neuron.operations(layer.output_shape))
    neurons = sum(layer.num_neurons for layer in network.layers)
    return Activity(samples=n, input_spikes=float(per_neuron[INPUT].sum()),
                    spikes_per_layer=[float(per_neuron[i].sum()) for i in range(len(reference.codes))],
                    synaptic_ops_per_layer=synops, neuron_updates=neurons * steps,
                    macs=sum(layer.num_neurons * layer.fan_in for layer in network.layers),
                    steps_per_sample=steps, latency_steps=network.latency_steps, encoding=network.encoding,
                    payload_bits=[network.message_bits(source) for source in (INPUT, *range(len(reference.codes)))],
                    unit_operations_per_layer=unit_ops)


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
    unit_nj: float = 0.0

    @property
    def total_nj(self) -> float:
        """The spiking network's energy per sample (embedded-core operations included)."""
        return self.synaptic_nj + self.neuron_nj + self.spike_nj + self.unit_nj

    def to_dict(self) -> dict:
        """JSON-ready form, counts and costs included."""
        activity = asdict(self.activity)
        activity["synaptic_ops"], activity["spikes"] = self.activity.synaptic_ops, self.activity.spikes
        activity["unit_operations"] = self.activity.unit_operations
        return {"activity": activity, "costs_pj": asdict(self.costs),
                "energy_nj": {"synaptic": self.synaptic_nj, "neuron_updates": self.neuron_nj, "spikes": self.spike_nj,
                              "unit_operations": self.unit_nj, "total": self.total_nj, "ann_fp32": self.ann_fp32_nj,
                              "ann_int8": self.ann_int8_nj}}


def estimate_energy(activity: Activity, costs: EnergyCosts = LOIHI_ENERGY) -> EnergyEstimate:
    """Charge each counted operation its published energy (pJ), in nJ per sample."""
    return EnergyEstimate(activity, costs,
                          synaptic_nj=activity.synaptic_ops * costs.synaptic_op_pj / 1e3,
                          neuron_nj=activity.neuron_updates * costs.neuron_update_pj / 1e3,
                          spike_nj=activity.spikes * costs.spike_pj / 1e3,
                          ann_fp32_nj=activity.macs * costs.mac_fp32_pj / 1e3,
                          ann_int8_nj=activity.macs * costs.mac_int8_pj / 1e3,
                          unit_nj=activity.unit_operations * costs.embedded_op_pj / 1e3)
