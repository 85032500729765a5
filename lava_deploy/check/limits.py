"""Published Loihi 2 resource limits and per-operation energies, each with its source.

Every figure here is a published number (see ``docs/loihi2-resources.md`` for the
full citations) or, where Intel publishes none for Loihi 2, the first-generation
Loihi figure, marked as such. lava-loihi's own compiler is the final word on a
chip; these limits let a user find out before getting there.
"""
from __future__ import annotations

from dataclasses import dataclass

from lava_deploy import chip

#: Sources, cited by key in the docstrings below and in the check's output.
SOURCES = {
    "loihi2-brief": "Intel Labs, 'Taking Neuromorphic Computing to the Next Level with Loihi 2', "
                    "Technology Brief, 2021 (Table 1)",
    "davies2018": "M. Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', "
                  "IEEE Micro 38(1), 2018 (Table 1 and Table 2)",
    "horowitz2014": "M. Horowitz, 'Computing's energy problem (and what we can do about it)', "
                    "ISSCC 2014 (45 nm figures)",
    "lava-dense": "lava-nc 0.10, lava.proc.dense.process.Dense: 8-bit weight mantissa, weight_exp, "
                  "num_message_bits (graded spikes of up to 24 bits in lava-dl's netx)",
}


@dataclass(frozen=True)
class CoreLimits:
    """What one neurocore (and one chip) can hold.

    Attributes:
        cores_per_chip: neurocores per Loihi 2 chip: 128 [loihi2-brief].
        neurons_per_core: 8,192 (1 million neurons per chip over 128 cores) [loihi2-brief].
        memory_per_core_bytes: 192 KB of per-core memory shared by synapses, neuron
            state and routing [loihi2-brief].
        input_axons_per_core: 4,096 distinct presynaptic sources per core. Loihi 2's
            figure is not published; this is first-generation Loihi's [davies2018].
        output_axons_per_core: 4,096 destination (neuron, core) routes per core, Loihi's [davies2018].
        weight_mantissa_bits: 8-bit signed weights with a shared exponent [lava-dense].
        weight_exp_min, weight_exp_max: the shared weight exponent's range, -8..7 [davies2018].
        state_bits: 24-bit signed membrane potential and current [lava-dense].
        message_bits: largest graded-spike payload, 24 bits [lava-dense].
        synapse_bytes: memory per synapse in the explicit (dense) encoding: one 8-bit weight.
            An estimate of ours: convolutional weight sharing on Loihi 2 can need less.
        neuron_state_bytes: memory per accumulate-emit neuron: two 24-bit registers and a
            24-bit bias, one 32-bit word each. An estimate of ours.
    """

    cores_per_chip: int = 128
    neurons_per_core: int = 8192
    memory_per_core_bytes: int = 192 * 1024
    input_axons_per_core: int = chip.INPUT_AXONS_PER_CORE
    output_axons_per_core: int = 4096
    weight_mantissa_bits: int = chip.WEIGHT_MANTISSA_BITS
    weight_exp_min: int = chip.WEIGHT_EXP_MIN_CHIP
    weight_exp_max: int = chip.WEIGHT_EXP_MAX_CHIP
    state_bits: int = chip.STATE_BITS
    message_bits: int = chip.MESSAGE_BITS
    synapse_bytes: int = 1
    neuron_state_bytes: int = 12


@dataclass(frozen=True)
class EnergyCosts:
    """Energy per operation, in picojoules.

    Attributes:
        synaptic_op_pj: one synaptic operation (a spike meeting one synapse), 23.6 pJ [davies2018]. A
            graded spike's operation (weight times payload) is charged the same: no figure is published for
            it, so graded estimates assume it costs what a binary one does.
        neuron_update_pj: one neuron's state update in one time step (active), 52 pJ [davies2018].
        spike_pj: one spike message within a tile, 1.7 pJ [davies2018]; hops between
            tiles cost 3.0 to 4.2 pJ more each and are not counted (a lower bound). A graded
            spike's message is charged the same (an assumption, as above).
        mac_fp32_pj: one 32-bit float multiply-accumulate (3.7 + 0.9 pJ) [horowitz2014].
        mac_int8_pj: one 8-bit integer multiply-accumulate (0.2 + 0.03 pJ) [horowitz2014].
        embedded_op_pj: one integer operation of a node the neurocores cannot run (a product's additions,
            a function unit's lookups, divisions and roots), charged as a 32-bit integer multiply and add
            (3.1 + 0.1 pJ) [horowitz2014]. Intel publishes no energy per instruction of Loihi 2's embedded
            cores, which spend far more on fetching and decoding it: a lower bound.

    Intel has not published per-operation energies for Loihi 2, so the neuromorphic
    figures are first-generation Loihi's (14 nm); the ANN figures are for 45 nm.
    The estimate compares orders of magnitude, not chips.
    """

    synaptic_op_pj: float = 23.6
    neuron_update_pj: float = 52.0
    spike_pj: float = 1.7
    mac_fp32_pj: float = 4.6
    mac_int8_pj: float = 0.23
    embedded_op_pj: float = 3.2


LOIHI2 = CoreLimits()
LOIHI_ENERGY = EnergyCosts()
