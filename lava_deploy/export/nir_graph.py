"""The integer network as a NIR graph: the rate-coded reading of the same weights (approximate).

NIR (the Neuromorphic Intermediate Representation) has no neuron that
accumulates for T steps and then emits the bits of its code, so the graph
holds the reading that QCFS was designed for (``docs/nir.md``): a hidden
layer's neurons are integrate-and-fire (``IF``) neurons with threshold
``L S`` (a spike stands for the top code L), subtractive reset and an initial
potential of half the threshold, the bias gives back the half step that this
initial potential adds, and each synapse's weights are the file's integer
weights times its source's top code. With T = L steps and a constant input,
a first hidden layer's spike count is exactly its code; otherwise, and deeper,
spike counts approximate the codes, better as T grows.

Nodes: ``Input`` (pixel codes / input levels, a current every step),
``SumPool2d`` where a synapse was an average pool folded into the next layer
(recovered exactly), ``Flatten`` before a dense synapse fed by a map,
``Conv2d`` and ``Affine`` (the layer's bias on its main synapse), ``IF`` per
hidden layer, and ``Output`` (the readout's current; its mean over the steps
estimates the logits). A residual shortcut is one more synapse into the same
IF node: NIR sums every edge into a node. No Lava import, and nir only inside
:func:`to_nir`.
"""
from __future__ import annotations

import json
from math import gcd
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lava_deploy import __version__
from lava_deploy.errors import DeployError
from lava_deploy.network import INPUT, ConvSynapse, DenseSynapse, Edge, Layer, SpikingNetwork, Synapse
from lava_deploy.simulate.nir_rate import CLASS_NAMES, INPUT_LEVELS, RESET, V_INIT, require_nir

if TYPE_CHECKING:     # typing only: nir is optional
    import nir


def sum_pool_size(synapse: Synapse) -> int:
    """Largest p such that the synapse equals a p x p sum pool followed by a p times smaller synapse (1: none).

    Conversion folds an average pool into the next layer by spreading each
    weight over a p x p block (``docs/conversion.md``, section 2); such a
    kernel is constant on p x p blocks, with stride and padding multiples of p,
    over a map whose sides p divides. Exactly then, summing each block first
    and applying one weight per block gives the same currents.
    """
    _, height, width = synapse.input_shape
    if isinstance(synapse, ConvSynapse):
        if synapse.dilation != (1, 1):
            return 1
        blocks = synapse.weight_mantissa
        sizes = (height, width, *blocks.shape[2:], *synapse.stride, *synapse.padding)
    elif isinstance(synapse, DenseSynapse):
        blocks = synapse.weight_mantissa.reshape(-1, *synapse.input_shape)
        sizes = (height, width)
    else:
        return 1
    common = gcd(*sizes)
    for p in range(common, 1, -1):
        if common % p == 0:
            lead, (kh, kw) = blocks.shape[:2], blocks.shape[2:]
            tiles = blocks.reshape(*lead, kh // p, p, kw // p, p)
            if np.array_equal(tiles, np.broadcast_to(tiles[:, :, :, :1, :, :1], tiles.shape)):
                return p
    return 1


def to_nir(network: SpikingNetwork) -> "nir.NIRGraph":
    """The network's rate-coded reading as a NIR graph (module docstring; ``docs/nir.md``).

    Raises:
        DeployError: nir is not installed, or a synapse has no NIR form (a conv fed by a dense layer:
            NIR 1.0 has no reshape node), or a node has none (a Transformer's).
    """
    require_nir()
    import nir

    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(network.input_shape)})}
    edges: list[tuple[str, str]] = []
    flat = {INPUT: False}     # whether a node's NIR output is a vector (a dense layer's) rather than a (C, H, W) map

    for i, layer in enumerate(network.layers):
        if layer.neuron.kind not in ("accumulate-emit", "readout"):
            raise DeployError(f"layer {i}: a {layer.neuron.kind} node has no NIR form (NIR has no signed neuron, "
                              "product of activations or function unit)")
        target = "output" if layer.is_readout else f"layer{i}_if"
        for k, edge in enumerate(layer.inputs):
            name = f"layer{i}" + (f"_shortcut{k}" if k else "")
            source = "input" if edge.source == INPUT else f"layer{edge.source}_if"
            bias = _rate_bias(layer) if k == 0 else np.zeros(layer.output_shape[0])
            chain = _synapse_nodes(nir, edge, network.source_levels(edge.source), bias, flat[edge.source], name)
            for node_name, node in chain:
                nodes[node_name] = node
                edges.append((source, node_name))
                source = node_name
            edges.append((source, target))
        flat[i] = isinstance(layer.synapse, DenseSynapse)
        if layer.is_readout:
            nodes["output"] = nir.Output(output_type={"output": np.array([layer.output_shape[0]])})
        else:
            shape = (layer.output_shape[0],) if flat[i] else layer.output_shape
            threshold = float(layer.levels << layer.neuron.scale_exp)
            nodes[target] = nir.IF(r=np.ones(shape, np.float32), v_threshold=np.full(shape, threshold, np.float32),
                                   v_reset=np.zeros(shape, np.float32),
                                   metadata={V_INIT: np.full(shape, threshold / 2, np.float32), RESET: "subtract"})
    metadata = {INPUT_LEVELS: network.input_levels, CLASS_NAMES: json.dumps(list(network.class_names)),
                "producer": f"lava-deploy {__version__}",
                "reading": "rate-coded QCFS: IF neurons, subtractive reset, initial potential v_init (half the "
                           "threshold), input codes / input_levels as a current every step, logits = mean over "
                           "steps of the output; approximates the bit-serial integer network",
                "bit_serial_time_steps": network.time_steps}
    if isinstance(network.metadata.get("dataset"), str):
        metadata["dataset"] = network.metadata["dataset"]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def rate_limit_logits(network: SpikingNetwork, codes: np.ndarray) -> np.ndarray:
    """What the graph's mean output converges to as T grows: the network without the floor (``docs/nir.md``).

    Each hidden neuron's rate tends to ``clip((u - S/2) / (L S), 0, 1)``, with u computed from the rates
    before it (a spike standing for the source's top code); the readout's mean current to ``u``. Float64.
    """
    with torch.no_grad():
        rates = {INPUT: torch.from_numpy(np.asarray(codes, np.float64) / network.input_levels)}
        for i, layer in enumerate(network.layers):
            u = sum(edge.synapse.current(rates[edge.source] * network.source_levels(edge.source), False)
                    for edge in layer.inputs) + torch.from_numpy(_rate_bias(layer)).view(1, -1, 1, 1)
            if layer.is_readout:
                return u.reshape(len(u), -1).numpy()
            rates[i] = torch.clamp(u / float(layer.levels << layer.neuron.scale_exp), 0, 1)
    raise ValueError("a network ends in a readout layer")


def _rate_bias(layer: Layer) -> np.ndarray:
    """The bias per step: a hidden layer's less the half step S/2 that the initial potential adds back.

    With potential u = w k + b, the code is floor(u / S) = floor((u - S/2) / S + 1/2): the neuron starting
    at half its threshold supplies the + 1/2.
    """
    bias = layer.bias.astype(np.float64)
    return bias if layer.is_readout else bias - 2.0 ** (layer.neuron.scale_exp - 1)


def _synapse_nodes(nir: Any, edge: Edge, source_levels: int, bias: np.ndarray, flat_source: bool,
                   name: str) -> list[tuple[str, Any]]:
    """NIR nodes of one edge, in order: [SumPool2d], [Flatten], Conv2d or Affine.

    A spike from the source stands for its top code, so the weights are the integer weights times it.
    """
    synapse = edge.synapse
    channels, height, width = synapse.input_shape
    if isinstance(synapse, ConvSynapse) and flat_source:
        raise DeployError(f"{name}: a conv fed by a dense layer has no NIR form (NIR 1.0 has no reshape node)")
    if not isinstance(synapse, (ConvSynapse, DenseSynapse)):
        raise DeployError(f"{name}: synapse kind '{synapse.kind}' has no NIR form yet")
    pool = 1 if flat_source else sum_pool_size(synapse)
    weight = synapse.weight.astype(np.float64) * source_levels
    chain = []
    if pool > 1:
        chain.append((f"{name}_pool", nir.SumPool2d(kernel_size=np.array([pool, pool]), stride=np.array([pool, pool]),
                                                     padding=np.array([0, 0]))))
        height, width = height // pool, width // pool
    if isinstance(synapse, ConvSynapse):
        kernel = weight[:, :, ::pool, ::pool]
        chain.append((f"{name}_conv", nir.Conv2d(
            input_shape=(height, width), weight=kernel.astype(np.float32),
            stride=tuple(s // pool for s in synapse.stride), padding=tuple(p // pool for p in synapse.padding),
            dilation=synapse.dilation, groups=synapse.groups, bias=bias.astype(np.float32))))
        return chain
    if not flat_source:
        chain.append((f"{name}_flatten", nir.Flatten(input_type={"input": np.array([channels, height, width])},
                                                     start_dim=0)))
        weight = weight.reshape(len(weight), channels, height * pool, width * pool)[:, :, ::pool, ::pool]
    chain.append((f"{name}_affine", nir.Affine(weight=weight.reshape(len(weight), -1).astype(np.float32),
                                               bias=bias.astype(np.float32))))
    return chain
