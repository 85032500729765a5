"""One rule for what can run: applied by the netx reader and writer, conversion and every backend."""
from __future__ import annotations

import numpy as np

from lava_deploy import chip
from lava_deploy.errors import DeployError
from lava_deploy.network.graph import BIT_SERIAL, INPUT, SpikingNetwork


def validate_network(network: SpikingNetwork) -> None:
    """Refuse an integer network that Loihi's fixed point cannot run exactly.

    The graph must be well formed (edges from the input or earlier layers,
    shapes that meet, one readout at the end, hidden neurons of the network's
    spike encoding, accumulate shifts of the bits their sources send), weight mantissas on the 8-bit
    grid, weight exponents in the file's range, thresholds and clamps inside
    the 24-bit state, T and input bits in range, and no membrane potential
    may leave the 24-bit state for any input (:meth:`SpikingNetwork.headroom_bits`).
    A network that passes never overflows on any backend, so the reference
    never reports figures for a network Lava would stop on.

    Raises:
        DeployError: one line naming the layer and the value at fault.
    """
    T = network.time_steps
    emitter = network.emitter       # an unknown encoding fails here, in one line
    if not chip.TIME_STEPS_MIN <= T <= chip.TIME_STEPS_MAX:
        raise DeployError(f"T = {T} time steps outside {chip.TIME_STEPS_MIN}..{chip.TIME_STEPS_MAX}")
    if not chip.INPUT_BITS_MIN <= network.input_bits <= chip.INPUT_BITS_MAX:
        raise DeployError(f"input bits {network.input_bits} outside {chip.INPUT_BITS_MIN}..{chip.INPUT_BITS_MAX}")
    if not network.layers or not network.layers[-1].is_readout:
        raise DeployError("the last layer must be a readout layer")
    if len(network.class_names) != network.layers[-1].num_neurons:
        raise DeployError(f"{len(network.class_names)} class names for {network.layers[-1].num_neurons} outputs")
    for i, layer in enumerate(network.layers):
        where = f"layer {i}"
        if layer.is_readout and i != len(network.layers) - 1:
            raise DeployError(f"{where}: a readout layer before the last layer")
        if not layer.inputs:
            raise DeployError(f"{where}: no incoming synapse")
        if layer.bias.shape not in ((layer.output_shape[0],), tuple(layer.output_shape)):
            raise DeployError(f"{where}: bias of shape {layer.bias.shape} for neurons {tuple(layer.output_shape)}: "
                              "need one per channel or one per neuron")
        if not layer.is_readout and layer.neuron.encoding != network.encoding:
            raise DeployError(f"{where}: a {layer.neuron.kind} neuron in a {network.encoding} network (its hidden "
                              f"layers are {emitter.kind})")
        if layer.synapse.operands > 1 and len(layer.inputs) > 1:
            raise DeployError(f"{where}: a {layer.synapse.kind} node takes no further edges")
        if layer.synapse.operands > 1 and INPUT in layer.inputs[0].sources:
            raise DeployError(f"{where}: a {layer.synapse.kind} takes the codes of layers, not the input's digits")
        from_input = {source == INPUT for edge in layer.inputs for source in edge.sources}
        if len(from_input) > 1:
            raise DeployError(f"{where}: edges from the input and from layers carry different bits per step")
        for k, edge in enumerate(layer.inputs):
            what = f"{where}: " + ("shortcut " if k else "")
            synapse = edge.synapse
            if len(edge.sources) != synapse.operands:
                raise DeployError(f"{what}a {synapse.kind} synapse takes {synapse.operands} operand(s), the edge "
                                  f"names {len(edge.sources)}")
            if synapse.operands > 1 and network.encoding != BIT_SERIAL:
                raise DeployError(f"{what}a {synapse.kind} synapse multiplies bit planes: a {network.encoding} "
                                  "network cannot hold one (a Transformer is sent bit-serially only)")
            problem = synapse.shape_problem()
            if problem:
                raise DeployError(f"{what}{problem}")
            for source, shape in zip(edge.sources, synapse.operand_shapes):
                if source != INPUT and not 0 <= source < i:
                    raise DeployError(f"{what}source {source} is not the input or an earlier layer")
                if source != INPUT and network.layers[source].is_readout:
                    raise DeployError(f"{what}source {source} is the readout layer")
                if tuple(shape) != tuple(network.source_shape(source)):
                    raise DeployError(f"{what}synapse takes {tuple(shape)}, its source sends "
                                      f"{tuple(network.source_shape(source))}")
            if synapse.output_shape != layer.output_shape:
                raise DeployError(f"{what}synapse gives {synapse.output_shape}, the neurons are {layer.output_shape}")
            if not chip.WEIGHT_EXP_MIN <= synapse.weight_exp <= chip.WEIGHT_EXP_MAX:
                raise DeployError(f"{what}weight exponent {synapse.weight_exp} outside the chip's "
                                  f"{chip.WEIGHT_EXP_MIN}..{chip.WEIGHT_EXP_MAX} (weights too large for 8 bits)")
            mantissa = synapse.weight_mantissa
            if mantissa.size and (mantissa.min() < chip.WEIGHT_MANTISSA_MIN or mantissa.max() > chip.WEIGHT_MANTISSA_MAX
                                  or (mantissa % 2).any()):
                raise DeployError(f"{what}weight mantissas are not even integers in "
                                  f"[{chip.WEIGHT_MANTISSA_MIN}, {chip.WEIGHT_MANTISSA_MAX}]")
        shift = network.message_bits(layer.inputs[0].source)
        if layer.accumulate_shift != shift:
            raise DeployError(f"{where}: accumulate shift {layer.accumulate_shift} is not the {shift} bit(s) "
                              "its sources send per step")
        layer.neuron.validate(T, where)
        spare = network.headroom_bits(i)
        if spare < 0:
            low, high = network.potential_bounds(i)
            raise DeployError(f"{where}: membrane potential can reach {high if high >= -low else low}, which "
                              f"overflows Loihi's {chip.STATE_BITS}-bit state by {-spare} bit(s)")
    if any(np.asarray(layer.bias).dtype.kind not in "iu" for layer in network.layers):
        raise DeployError("biases must be integers")
