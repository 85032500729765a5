"""Will it fit? A network mapped onto Loihi 2 neurocores, and a fixed-point lint.

Each layer's neurons are spread over cores, as many per core as every per-core
limit allows (neurons, memory, input axons, output routes); the layer then
needs ``ceil(neurons / per_core)`` cores. A conv layer is split into tiles of
output positions (all channels), so a core receives only the input patch its
kernels reach; a dense layer receives every input on every core. This is an estimate of what
lava-loihi's partitioner does, not a copy of it: it names the layers that
cannot be placed at all and gives the order of magnitude of the rest.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from lava_deploy.check.limits import LOIHI2, CoreLimits
from lava_deploy.chip import WEIGHT_MANTISSA_MAX, WEIGHT_MANTISSA_MIN
from lava_deploy.network import INPUT, Layer, SpikingNetwork


@dataclass
class LayerFit:
    """One layer mapped onto cores.

    Attributes:
        index, kind: the layer.
        neurons: neurons it drives.
        synapses: synaptic connections into them (neurons x fan-in).
        fan_in: synapses into one neuron.
        fan_out: mean synapses out of one of its neurons into the next layer (0 for the readout).
        weight_precision: e.g. ``"8-bit x 2^3"``.
        memory_bytes: synapse and neuron-state memory of the whole layer.
        input_axons: distinct inputs of the busiest core.
        neurons_per_core: neurons placed on each core.
        cores: cores the layer needs (0 if it cannot be placed).
        limited_by: which per-core limit set ``neurons_per_core`` ("-" when the whole layer fits one core).
        problem: why the layer cannot be placed, or None.
        needs: what Loihi 2 needs beyond its neurocores for this node (a product, a function unit), or None;
            such a node takes no neurocore here.
    """

    index: int
    kind: str
    neurons: int
    synapses: int
    fan_in: int
    fan_out: float
    weight_precision: str
    memory_bytes: int
    input_axons: int
    neurons_per_core: int
    cores: int
    limited_by: str
    problem: str | None = None
    needs: str | None = None


@dataclass
class Finding:
    """One fixed-point lint result: ``error`` blocks deployment, ``ok`` records a passed check."""

    severity: str
    layer: int | None
    message: str


@dataclass
class FitReport:
    """The whole network on Loihi 2: per-layer fit, lint, and totals."""

    layers: list[LayerFit]
    findings: list[Finding]
    limits: CoreLimits
    cores: int = 0
    chips: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def deployable(self) -> bool:
        """True when every layer can be placed and no lint error was found."""
        return not self.problems

    def to_dict(self) -> dict:
        """JSON-ready form (``lava-deploy check --json``)."""
        return {"deployable": self.deployable, "cores": self.cores, "chips": self.chips,
                "problems": list(self.problems), "layers": [asdict(layer) for layer in self.layers],
                "findings": [asdict(f) for f in self.findings], "limits": asdict(self.limits)}


def fit_network(network: SpikingNetwork, limits: CoreLimits = LOIHI2) -> FitReport:
    """Map every layer onto neurocores and lint the fixed point (see the module docstring).

    Args:
        network: the converted integer network.
        limits: the per-core limits to map against (Loihi 2's published ones by default).
    """
    fits: dict[int, LayerFit] = {}
    # Last layer first: how many cores a layer's spikes must reach depends on how its targets are split.
    for i in reversed(range(len(network.layers))):
        fits[i] = _fit_layer(network, i, fits, limits)
    layers = [fits[i] for i in range(len(network.layers))]
    findings = lint(network, limits)
    problems = [f"layer {f.index} ({f.kind}): {f.problem}" for f in layers if f.problem]
    problems += [f"layer {f.index} ({f.kind}): needs {f.needs}" for f in layers if f.needs]
    problems += [f"layer {f.layer}: {f.message}" if f.layer is not None else f.message
                 for f in findings if f.severity == "error"]
    cores = sum(f.cores for f in layers)
    return FitReport(layers, findings, limits, cores=cores, chips=math.ceil(cores / limits.cores_per_chip),
                     problems=problems)


def _fit_layer(network: SpikingNetwork, index: int, fits: dict[int, LayerFit], limits: CoreLimits) -> LayerFit:
    layer = network.layers[index]
    neurons, fan_in = layer.num_neurons, layer.fan_in
    per_neuron_bytes = fan_in * limits.synapse_bytes + limits.neuron_state_bytes
    caps = {"neurons": limits.neurons_per_core, "memory": limits.memory_per_core_bytes // per_neuron_bytes}
    fan_out, destinations = 0.0, 0
    for target, edge in network.consumers(index):
        reached = network.layers[target].num_neurons * edge.synapse.fan_in / neurons
        fan_out += reached
        if fits[target].cores:
            # A spike travels once to every core holding one of its targets (+1: targets straddling a boundary).
            destinations += min(fits[target].cores, math.ceil(reached / fits[target].neurons_per_core) + 1)
    if destinations:
        caps["output routes"] = limits.output_axons_per_core // destinations
    caps["input axons"] = _input_axon_cap(layer, limits, min(caps.values()))
    per_core = min(min(caps.values()), neurons)
    limited_by = min(caps, key=caps.get) if per_core < neurons else "-"
    weight = f"{limits.weight_mantissa_bits}-bit x 2^{layer.synapse.weight_exp}"
    kind = layer.synapse.kind if layer.neuron.kind in ("accumulate-emit", "readout") else \
        f"{layer.synapse.kind}>{layer.neuron.kind}"
    row = LayerFit(index, kind, neurons, neurons * fan_in, fan_in, round(fan_out, 2), weight,
                   neurons * per_neuron_bytes, _input_axons(layer, max(per_core, 1)), per_core,
                   math.ceil(neurons / per_core) if per_core else 0, limited_by)
    needs = [what for what in (layer.synapse.off_chip(), layer.neuron.off_chip()) if what]
    if needs:
        row.needs, row.cores = needs[0], 0
    elif per_core < 1:
        row.problem = _why_not(layer, limited_by, per_neuron_bytes, limits)
    return row


def _why_not(layer: Layer, limited_by: str, per_neuron_bytes: int, limits: CoreLimits) -> str:
    if limited_by == "memory":
        return (f"one neuron needs {per_neuron_bytes} bytes of synapses and state, more than a core's "
                f"{limits.memory_per_core_bytes}")
    if limited_by == "input axons":
        return (f"one core would need {_input_axons(layer, 1)} input axons, more than "
                f"{limits.input_axons_per_core} (Loihi's published figure; Loihi 2's is not published): "
                f"the fan-in must be split")
    return f"no neuron fits a core ({limited_by})"


def _input_axons(layer: Layer, per_core: int) -> int:
    """Distinct inputs feeding a core that holds ``per_core`` of the layer's neurons (every edge's).

    A core holds a near-square tile of output positions, all channels at each;
    each synapse kind says which of its inputs such a tile needs.
    """
    out_c, out_h, out_w = layer.output_shape
    positions = math.ceil(per_core / out_c)
    tile_w = min(out_w, math.ceil(math.sqrt(positions)))
    tile_h = min(out_h, math.ceil(positions / tile_w))
    return sum(edge.synapse.input_axons(tile_h, tile_w) for edge in layer.inputs)


def _input_axon_cap(layer: Layer, limits: CoreLimits, upper: int) -> int:
    """The most neurons per core (at most ``upper``) whose inputs fit the input-axon limit; 0 if none."""
    low, high = 0, max(upper, 0)
    while low < high:                       # largest n with _input_axons(n) <= limit (monotone in n)
        mid = (low + high + 1) // 2
        if _input_axons(layer, mid) <= limits.input_axons_per_core:
            low = mid
        else:
            high = mid - 1
    return low


def lint(network: SpikingNetwork, limits: CoreLimits = LOIHI2) -> list[Finding]:
    """Fixed-point checks: 24-bit headroom, weight mantissa and exponent ranges, threshold, and the payload
    bits of every graded spike (input digits, graded codes) against the message limit."""
    findings = []
    state_max = 1 << (limits.state_bits - 1)
    for i, (layer, spare) in enumerate(zip(network.layers, network.headroom())):
        if spare < 0:
            findings.append(Finding("error", i, f"membrane potential can exceed the {limits.state_bits}-bit state "
                                                f"by {-spare} bit(s)"))
        else:
            findings.append(Finding("ok", i, f"{spare} bit(s) of {limits.state_bits}-bit headroom"))
        for k, edge in enumerate(layer.inputs):
            synapse, what = edge.synapse, "shortcut weight" if k else "weight"
            if not limits.weight_exp_min <= synapse.weight_exp <= limits.weight_exp_max:
                findings.append(Finding("error", i, f"{what} exponent {synapse.weight_exp} outside "
                                                    f"{limits.weight_exp_min}..{limits.weight_exp_max}"))
            low, high = int(synapse.weight_mantissa.min()), int(synapse.weight_mantissa.max())
            if low < WEIGHT_MANTISSA_MIN or high > WEIGHT_MANTISSA_MAX:
                findings.append(Finding("error", i, f"{what} mantissas {low}..{high} exceed "
                                                    f"{limits.weight_mantissa_bits} bits"))
        if not layer.is_readout and layer.threshold(network.time_steps) >= state_max:
            findings.append(Finding("error", i, f"threshold {layer.threshold(network.time_steps)} does not fit "
                                                f"the {limits.state_bits}-bit state"))
    if any(layer.neuron.signed for layer in network.layers):
        findings.append(Finding("ok", None, "signed spikes (-1, 0, 1) travel as 2-bit graded spikes, or binary "
                                            "spikes on a second, negative axon"))
    for source in (INPUT, *range(len(network.layers) - 1)):        # payload bits of every node that sends
        bits, what = network.message_bits(source), "input digits" if source == INPUT else "codes"
        layer = 0 if source == INPUT else source
        if bits > limits.message_bits:
            findings.append(Finding("error", layer, f"{what} of {bits} bits exceed {limits.message_bits}-bit "
                                                    "graded spikes"))
        elif source == INPUT:
            kind = "binary spikes" if bits == 1 else f"{bits}-bit graded spikes"
            findings.append(Finding("ok", 0, f"input arrives as {kind}"))
        elif bits > 1:
            findings.append(Finding("ok", layer, f"codes leave as {bits}-bit graded spikes, one per non-zero code "
                                                 f"(payload limit {limits.message_bits} bits)"))
    findings.append(Finding("ok", len(network.layers) - 1, "logits leave as graded spikes within the "
                                                           f"{limits.message_bits}-bit payload (headroom above)"))
    return findings
