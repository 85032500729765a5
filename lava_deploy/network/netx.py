"""netx HDF5: the file format lava-dl's netx reads, extended with our neuron.

Layout (keys shared with lava-dl netx keep netx's names and conventions; see
docs/netx-format.md for every key):

    layer/0            type='input', shape (C, H, W), inputBits, digitBits
    layer/i            type = a synapse kind ('conv' | 'dense') or 'flatten'; the
                       synapse's keys (its class writes and reads them), bias
    layer/i/neuron     type='ACCEMIT' (or a format-2 kind's), timeSteps, levels, scaleExp,
                       vThMant, accumulateShift, phase, readout (and the kind's own keys);
                       gradedSpike=1 (graded files)
    layer/i/skip       (residual shortcut, optional) a conv synapse's keys and
                       source (the layer/j it comes from), delay
    simulation         Ts=1, tSample=steps per sample (T bit-serial, 1 graded)
    lava_deploy        attrs: formatVersion, timeSteps, inputBits, classNames,
                       inputShape, metadata (JSON), encoding (format 2)

netx describes chains: each layer's main synapse comes from the layer group
before it; further edges into a layer are ``skip`` groups. Format 2 (a
graded network, or a Transformer's graph) adds the ``encoding`` attribute,
``source``/``sourceDelay`` (and a product's ``operand``/``operandDelay``) to
every layer group, the ``product`` layer type and the SIGNED, SOFTMAX,
LAYERNORM and LOOKUP neuron types; bit-serial chains are still written as
format 1. No Lava import: this module is the file format, for every backend.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from lava_deploy import chip
from lava_deploy.errors import DeployError
from lava_deploy.files import atomic_output
from lava_deploy.network.graph import (BIT_SERIAL, ENCODINGS, INPUT, NEURON_KINDS, SYNAPSE_KINDS, Edge, Layer,
                                       SpikingNetwork)
from lava_deploy.network.validate import validate_network

#: The newest format this module reads. Format 2 added the ``encoding`` attribute (graded spikes) and a
#: graph's explicit edges and node kinds (a Transformer's); a file is written in the oldest format that holds
#: it, so bit-serial chains stay format 1 for older readers.
FORMAT_VERSION = 2
#: Our accumulate-then-emit neuron's type name in ``layer/i/neuron/type`` (netx stores S10 strings).
NEURON_TYPE = "ACCEMIT"
#: Largest array a file may make the reader allocate (bytes), and the most elements a non-weight key may hold.
READ_BUDGET_BYTES = 1 << 30
_SMALL_KEY_ELEMENTS = 16
#: Integers beyond this cannot be a weight, bias or size of any network; refusing them keeps int64 from wrapping.
_INT_LIMIT = 1 << 62
#: Largest ratio of an array's size in memory to its bytes in the file (deflate's limit is about 1032:1):
#: a few stored bytes cannot declare gigabytes.
_MAX_EXPANSION = 1100
#: Largest image side, and most neurons in one layer, a file may declare.
_MAX_SIDE, _MAX_NEURONS = 1 << 14, 1 << 24


def _type(name: str) -> np.ndarray:
    """netx's string convention: a (1,) array of S10 bytes."""
    return np.array([name.encode()], dtype="S10")


def write_netx(network: SpikingNetwork, path: str | Path) -> None:
    """Write ``network`` as a netx HDF5 file, atomically (temporary file, then rename).

    Nothing is left behind on error: neither a partial file nor the temporary one.

    Raises:
        DeployError: the network breaks a rule the reader applies (:func:`validate_network`).
    """
    validate_network(network)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        _write(f, network)


def format_version(network: SpikingNetwork) -> int:
    """1 for a bit-serial chain of conv and dense layers with accumulate-emit neurons and at most one conv
    shortcut each (what netx describes, plus ``skip``); 2 for a graded network or any other graph (a
    Transformer's)."""
    if network.encoding != BIT_SERIAL:
        return 2
    for i, layer in enumerate(network.layers):
        main, shortcuts = layer.inputs[0], layer.inputs[1:]
        if main.source != (i - 1 if i else INPUT) or main.operand is not None or len(shortcuts) > 1 \
                or any(edge.synapse.kind != "conv" for edge in shortcuts) or layer.neuron.netx_type != NEURON_TYPE \
                or main.synapse.kind not in ("conv", "dense"):
            return 2
    return 1


def _write(f: h5py.File, network: SpikingNetwork) -> None:
    T, bit_serial = network.time_steps, network.encoding == BIT_SERIAL
    version = format_version(network)
    group = f.create_group("layer/0")
    group.create_dataset("type", data=_type("input"))
    group.create_dataset("shape", data=np.array(network.input_shape))
    group.create_dataset("inputBits", data=network.input_bits)
    group.create_dataset("digitBits", data=network.input_digit_bits)
    index = 1
    group_of = {INPUT: 0}       # layer i -> its layer/N group (flatten groups shift the numbers)
    for i, layer in enumerate(network.layers):
        main, shortcuts = layer.inputs[0], layer.inputs[1:]
        if len(shortcuts) > 1:
            raise DeployError(f"layer {i}: the netx format holds one shortcut per layer, not {len(shortcuts)}")
        if main.source != INPUT and len(main.synapse.lava_shape(main.synapse.input_shape)) == 1 \
                and len(network.layers[main.source].synapse.lava_shape(network.layers[main.source].output_shape)) == 3:
            # netx flattens a (W, H, C) output before a flat synapse only when told to.
            f.create_group(f"layer/{index}").create_dataset("type", data=_type("flatten"))
            index += 1
        group = f.create_group(f"layer/{index}")
        group_of[i] = index
        group.create_dataset("type", data=_type(main.synapse.kind))
        if version > 1:         # the graph's edges: format 1 is a chain, each layer fed by the one before
            for key, source in zip(("source", "operand"), main.sources):
                group.create_dataset(key, data=group_of[source])
                group.create_dataset(f"{key}Delay", data=network.edge_delay(i, main, source))
        main.synapse.write_netx(group)
        group.create_dataset("bias", data=np.asarray(layer.bias, np.int64))
        neuron = group.create_group("neuron")
        neuron.create_dataset("type", data=_type(layer.neuron.netx_type))
        keys = {"timeSteps": T, **layer.neuron.netx_keys(T), "accumulateShift": layer.accumulate_shift,
                "phase": network.accumulate_start(i)}
        for key, value in keys.items():
            neuron.create_dataset(key, data=value)
        for edge in shortcuts:
            skip = group.create_group("skip")
            skip.create_dataset("type", data=_type(edge.synapse.kind))
            skip.create_dataset("source", data=group_of[edge.source])
            edge.synapse.write_netx(skip)
            skip.create_dataset("delay", data=network.edge_delay(i, edge))
        index += 1
    f.create_dataset("simulation/Ts", data=1)
    f.create_dataset("simulation/tSample", data=network.steps_per_sample)
    meta = f.create_group("lava_deploy")
    planes = "T digit planes of digitBits bits, MSB first" if bit_serial else "one graded spike of inputBits bits"
    meta.attrs.update({
        "formatVersion": version, "timeSteps": T, "inputBits": network.input_bits,
        "inputShape": np.array(network.input_shape), "classNames": json.dumps(list(network.class_names)),
        "inputEncoding": f"pixel = k / (2**inputBits - 1), no mean/std; {planes}",
        "metadata": json.dumps(network.metadata),
    })
    if version > 1:
        meta.attrs["encoding"] = network.encoding


class _Reader:
    """Reads one file, turning every problem into a one-line DeployError naming the key.

    Synapse kinds read their own keys through it (``scalar``, ``pairs``, ``integers``,
    ``weight_exponent``, ``mantissa``), within its limits ``max_side`` and ``max_neurons``.
    """

    max_side, max_neurons = _MAX_SIDE, _MAX_NEURONS

    def __init__(self, path: Path, f: h5py.File) -> None:
        self.path, self.f = path, f

    def weight_exponent(self, group: h5py.Group, where: str) -> int:
        """``weightExponent`` within the file's range (weights are stored shifted by it)."""
        return self.scalar(group, "weightExponent", where, chip.WEIGHT_EXP_MIN, chip.WEIGHT_EXP_MAX)

    def mantissa(self, where: str, weight: np.ndarray, exp: int) -> np.ndarray:
        """The even 8-bit mantissa of weights stored shifted by ``exp`` (one line if they are not)."""
        mantissa = weight >> exp
        if (mantissa << exp != weight).any() or (mantissa % 2).any() \
                or mantissa.min() < chip.WEIGHT_MANTISSA_MIN or mantissa.max() > chip.WEIGHT_MANTISSA_MAX:
            raise self.fail(where, f"'weight' is not an even 8-bit mantissa in [{chip.WEIGHT_MANTISSA_MIN}, "
                                   f"{chip.WEIGHT_MANTISSA_MAX}] shifted by {exp}")
        return mantissa

    def fail(self, where: str, message: str) -> DeployError:
        return DeployError(f"{self.path.name}: {where}: {message}")

    def value(self, group: h5py.Group, key: str, where: str, shape: tuple | None = None) -> np.ndarray:
        """Read ``key`` after checking, from its header alone, that it is the expected shape and affordable."""
        if key not in group:
            raise self.fail(where, f"missing key '{key}'")
        dataset = group[key]
        if not isinstance(dataset, h5py.Dataset):
            raise self.fail(where, f"'{key}' is not an array")
        if shape is not None and tuple(dataset.shape) != tuple(shape):
            raise self.fail(where, f"'{key}' has shape {tuple(dataset.shape)}, expected {tuple(shape)}")
        if shape is None and dataset.size > _SMALL_KEY_ELEMENTS:
            raise self.fail(where, f"'{key}' holds {dataset.size} values; expected at most {_SMALL_KEY_ELEMENTS}")
        declared = dataset.size * dataset.dtype.itemsize
        stored = dataset.id.get_storage_size()
        if declared > READ_BUDGET_BYTES or (declared > 4096 and declared > stored * _MAX_EXPANSION):
            raise self.fail(where, f"'{key}' declares {declared} bytes but the file stores {stored} for it "
                                   f"(limit {READ_BUDGET_BYTES} bytes)")
        try:
            return np.asarray(dataset[()])
        except Exception as exc:  # h5py raises several kinds for damaged data
            raise self.fail(where, f"cannot read '{key}': {_first_line(exc)}") from None

    def integers(self, group: h5py.Group, key: str, where: str, shape: tuple | None = None) -> np.ndarray:
        data = self.value(group, key, where, shape)
        if data.dtype.kind not in "iuf":
            raise self.fail(where, f"'{key}' is not numeric")
        if data.dtype.kind == "f":
            if not np.isfinite(data).all():
                raise self.fail(where, f"'{key}' contains NaN or infinity")
            if (data != np.round(data)).any():
                raise self.fail(where, f"'{key}' holds non-integer values")
        if data.size and (data.min() < -_INT_LIMIT or data.max() > _INT_LIMIT):
            raise self.fail(where, f"'{key}' holds values beyond +-2^62")
        return data.astype(np.int64)

    def scalar(self, group: h5py.Group, key: str, where: str, low: int | None = None, high: int | None = None) -> int:
        data = self.integers(group, key, where)
        if data.size != 1:
            raise self.fail(where, f"'{key}' should be one number, has shape {data.shape}")
        value = int(data.reshape(-1)[0])
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.fail(where, f"'{key}' {value} outside {low}..{high}")
        return value

    def pairs(self, group: h5py.Group, keys: tuple[str, ...], where: str, low: int, high: int) -> dict:
        """Conv geometry: each key one number or an (H, W) pair, within low..high."""
        out = {}
        for key in keys:
            data = self.integers(group, key, where)
            if data.size not in (1, 2) or data.min() < low or data.max() > high:
                raise self.fail(where, f"'{key}' must be one or two numbers in {low}..{high}")
            out[key] = tuple(int(v) for v in np.broadcast_to(data.reshape(-1), (2,)))
        return out

    def attribute(self, name: str, kind: type, decode_json: bool = False) -> Any:
        """A ``lava_deploy`` attribute of the expected type (JSON-decoded first where it is stored as JSON)."""
        attrs = self.f["lava_deploy"].attrs
        if name not in attrs:
            raise self.fail("lava_deploy", f"missing attribute '{name}'")
        value = attrs[name]
        try:
            if decode_json:
                value = json.loads(value.decode() if isinstance(value, bytes) else str(value))
            elif kind is int:
                value = np.asarray(value)
                if value.size != 1 or value.dtype.kind not in "iu":
                    raise ValueError("not one integer")
                value = int(value.reshape(-1)[0])
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise self.fail("lava_deploy", f"attribute '{name}' is malformed ({_first_line(exc)})") from None
        if not isinstance(value, kind):
            raise self.fail("lava_deploy", f"attribute '{name}' must be a JSON {kind.__name__}, "
                                           f"got {type(value).__name__}")
        return value

    def text(self, group: h5py.Group, key: str, where: str) -> str:
        data = self.value(group, key, where).reshape(-1)
        if data.size != 1:
            raise self.fail(where, f"'{key}' should be one string")
        item = data[0]
        return item.decode(errors="replace") if isinstance(item, bytes) else str(item)


def neuron_types(path: str | Path) -> list[str]:
    """Neuron type of every layer that has one (e.g. ``['ACCEMIT', ...]`` or ``['CUBA', ...]``)."""
    with _open(Path(path)) as f:
        reader = _Reader(Path(path), f)
        layers = f["layer"] if "layer" in f else {}
        return [reader.text(layers[k]["neuron"], "type", f"layer/{k}/neuron")
                for k in sorted(layers, key=int) if "neuron" in layers[k]]


def _open(path: Path) -> h5py.File:
    if path.is_dir():
        raise DeployError(f"network file {path} is a folder, not a netx HDF5 file")
    if not path.is_file():
        raise DeployError(f"network file {path} does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DeployError(f"{path.name}: cannot read: not an HDF5 file or truncated ({str(exc).splitlines()[0]})") from None


def read_netx(path: str | Path) -> SpikingNetwork:
    """Read a file written by :func:`write_netx`, validating every key.

    Raises:
        DeployError: one line naming the file, the layer and the key at fault.
    """
    path = Path(path)
    with _open(path) as f:
        reader = _Reader(path, f)
        try:
            network = _read(reader, f)
        except (KeyError, ValueError, TypeError, OSError, AttributeError, OverflowError, RuntimeError) as exc:
            # h5py's damage below the keys we check surfaces as many kinds
            raise DeployError(f"{path.name}: damaged file: {_first_line(exc)}") from None
    try:
        validate_network(network)
    except DeployError as exc:
        raise DeployError(f"{path.name}: {exc}") from None
    return network


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _read(r: _Reader, f: h5py.File) -> SpikingNetwork:
    if "lava_deploy" not in f:
        kinds = set(neuron_types(r.path)) if "layer" in f else set()
        what = f"a stock netx network ({', '.join(sorted(kinds))} neurons)" if kinds else "not a lava-deploy network"
        hint = "; run it with 'lava-deploy simulate NET --input-spikes X.npy' (or --input-bias)" if kinds else ""
        raise r.fail("lava_deploy", f"missing group: {what}{hint}")
    if not isinstance(f["lava_deploy"], h5py.Group):
        raise r.fail("lava_deploy", "must be a group")
    version = r.attribute("formatVersion", int)
    if not 1 <= version <= FORMAT_VERSION:
        raise r.fail("lava_deploy", f"format version {version} is not one this lava-deploy reads (1..{FORMAT_VERSION})")
    T, input_bits = r.attribute("timeSteps", int), r.attribute("inputBits", int)
    if not chip.TIME_STEPS_MIN <= T <= chip.TIME_STEPS_MAX:
        raise r.fail("lava_deploy", f"timeSteps {T} outside {chip.TIME_STEPS_MIN}..{chip.TIME_STEPS_MAX}")
    if not chip.INPUT_BITS_MIN <= input_bits <= chip.INPUT_BITS_MAX:
        raise r.fail("lava_deploy", f"inputBits {input_bits} outside {chip.INPUT_BITS_MIN}..{chip.INPUT_BITS_MAX}")
    class_names, metadata = r.attribute("classNames", list, decode_json=True), r.attribute("metadata", dict, True)
    if not all(isinstance(name, str) for name in class_names):
        raise r.fail("lava_deploy", "attribute 'classNames' must be a JSON list of strings")
    if "layer" not in f or not isinstance(f["layer"], h5py.Group) or "0" not in f["layer"]:
        raise r.fail("layer/0", "missing input layer")
    layers_group = f["layer"]
    if not all(isinstance(layers_group[n], h5py.Group) for n in layers_group):
        raise r.fail("layer", "every layer/N must be a group")
    names = sorted(layers_group, key=lambda k: int(k) if k.isdigit() else -1)
    if [n for n in names if not n.isdigit()] or [int(n) for n in names] != list(range(len(names))):
        raise r.fail("layer", f"layer groups must be numbered 0..n-1, found {names}")
    if r.text(layers_group["0"], "type", "layer/0") != "input":
        raise r.fail("layer/0", "the first layer must have type 'input'")
    input_shape = tuple(int(s) for s in r.integers(layers_group["0"], "shape", "layer/0", (3,)))
    if min(input_shape) < 1 or max(input_shape) > _MAX_SIDE or np.prod(input_shape) > _MAX_NEURONS:
        raise r.fail("layer/0", f"'shape' {input_shape} outside 1..{_MAX_SIDE} per axis")
    encoding = r.attribute("encoding", str) if version >= 2 else BIT_SERIAL
    if encoding not in ENCODINGS:
        raise r.fail("lava_deploy", f"unknown encoding '{encoding}' (known: {', '.join(ENCODINGS)})")
    network = SpikingNetwork([], T, input_bits, input_shape, class_names, metadata, encoding)
    for key, want in (("inputBits", input_bits), ("digitBits", network.input_digit_bits)):
        if r.scalar(layers_group["0"], key, "layer/0") != want:
            raise r.fail("layer/0", f"'{key}' is not {want} (lava_deploy's inputBits {input_bits}, T = {T})")
    if "simulation" not in f or not isinstance(f["simulation"], h5py.Group):
        raise r.fail("simulation", "missing group")
    for key, want in (("Ts", 1), ("tSample", network.steps_per_sample)):   # netx's keys: steps per step, per sample
        if r.scalar(f["simulation"], key, "simulation") != want:
            raise r.fail("simulation", f"'{key}' is not {want}")
    shape_attr = f["lava_deploy"].attrs.get("inputShape")
    if shape_attr is None or np.asarray(shape_attr).shape != (3,) or tuple(np.asarray(shape_attr)) != input_shape:
        raise r.fail("lava_deploy", f"attribute 'inputShape' is not layer/0's shape {input_shape}")
    layer_of = {0: INPUT}       # layer/N group -> the node it holds
    for name in names[1:]:
        where = f"layer/{name}"
        group = layers_group[name]
        kind = r.text(group, "type", where)
        if kind == "flatten":
            continue
        if kind not in SYNAPSE_KINDS:
            raise r.fail(where, f"unknown layer type '{kind}' (lava-deploy reads input, flatten, "
                                f"{', '.join(SYNAPSE_KINDS)})")
        if network.layers and network.layers[-1].is_readout:
            raise r.fail(where, "a layer follows the readout layer")
        kind_class = SYNAPSE_KINDS[kind]
        if version == 1:
            if kind_class.operands > 1:
                raise r.fail(where, f"a '{kind}' layer needs format version 2")
            sources = [len(network.layers) - 1 if network.layers else INPUT]
        else:
            sources = [_read_source(r, group, key, where, network, layer_of)
                       for key in ("source", "operand")[:kind_class.operands]]
        shapes = {"operand_shape": network.source_shape(sources[1])} if len(sources) > 1 else {}
        synapse = kind_class.read_netx(r, group, where, network.source_shape(sources[0]), False, **shapes)
        edge = Edge(sources[0], synapse, *sources[1:])
        network.layers.append(_read_layer(r, group, where, network, edge))
        if version > 1:
            for key, source in zip(("source", "operand"), edge.sources):
                delay, expected = r.scalar(group, f"{key}Delay", where), network.edge_delay(len(network.layers) - 1,
                                                                                             edge, source)
                if delay != expected:
                    raise r.fail(where, f"misaligned: '{key}Delay' is {delay} steps, but its spikes meet the "
                                        f"node's other inputs only after {expected}")
        if "skip" in group:
            _read_skip(r, group["skip"], f"{where}/skip", network, layer_of)
        layer_of[int(name)] = len(network.layers) - 1
    if not network.layers or not network.layers[-1].is_readout:
        raise r.fail("layer", "the last layer must be a readout layer (neuron/readout = 1)")
    if len(network.class_names) != network.layers[-1].output_shape[0]:
        raise r.fail("lava_deploy", f"{len(network.class_names)} class names for "
                     f"{network.layers[-1].output_shape[0]} outputs")
    return network


def _read_skip(r: _Reader, group: h5py.Group, where: str, network: SpikingNetwork,
               layer_of: dict[int, int]) -> None:
    """Add the shortcut edge to the layer just read (network.layers[-1]), checked against its source and in time."""
    index, layer = len(network.layers) - 1, network.layers[-1]
    if not isinstance(group, h5py.Group):
        raise r.fail(where, "must be a group")
    kind = r.text(group, "type", where)
    if kind not in SYNAPSE_KINDS:
        raise r.fail(where, f"unknown shortcut type '{kind}'")
    source_group = r.scalar(group, "source", where)
    source = layer_of.get(source_group)
    if source is None or source == INPUT or network.layers[source].is_readout:
        raise r.fail(where, f"'source' layer/{source_group} is not an earlier layer with neurons")
    synapse = SYNAPSE_KINDS[kind].read_netx(r, group, where, network.source_shape(source), True)
    if synapse.output_shape != layer.output_shape:
        raise r.fail(where, f"the shortcut gives {synapse.output_shape}, the layer's neurons are {layer.output_shape}")
    edge = Edge(source, synapse)
    layer.inputs.append(edge)
    delay, expected = r.scalar(group, "delay", where), network.edge_delay(index, edge)
    if delay != expected:
        raise r.fail(where, f"misaligned: 'delay' is {delay} steps, but layer/{source_group}'s spikes meet this "
                            f"layer's other input only after {expected}")


def _read_source(r: _Reader, group: h5py.Group, key: str, where: str, network: SpikingNetwork,
                 layer_of: dict[int, int]) -> int:
    """The node a format-2 edge comes from: ``key`` names an earlier group (the input, or a layer with neurons)."""
    number = r.scalar(group, key, where)
    node = layer_of.get(number)
    if node is None or (node != INPUT and network.layers[node].is_readout):
        raise r.fail(where, f"'{key}' layer/{number} is not the input or an earlier layer with neurons")
    return node


def _neuron_kind(r: _Reader, neuron_type: str, readout: bool, network: SpikingNetwork, where: str) -> type:
    """The registered neuron kind of a ``neuron/type`` (``ACCEMIT``: the readout by its flag, else the hidden
    kind of the network's encoding)."""
    if neuron_type == NEURON_TYPE:
        return NEURON_KINDS["readout"] if readout else network.emitter
    kinds = {cls.netx_type: cls for cls in NEURON_KINDS.values() if cls.netx_type != NEURON_TYPE}
    if neuron_type not in kinds:
        raise r.fail(where, f"unknown neuron type '{neuron_type}' (lava-deploy runs {NEURON_TYPE}, "
                     f"{', '.join(sorted(kinds))}; stock netx CUBA networks run through lava-dl's netx)")
    if readout:
        raise r.fail(where, f"a {neuron_type} neuron cannot be the readout")
    return kinds[neuron_type]


def _read_layer(r: _Reader, group: h5py.Group, where: str, network: SpikingNetwork, main: Edge) -> Layer:
    """The bias and neuron of the layer whose main synapse was just read."""
    out = main.synapse.output_shape
    per_neuron = isinstance(group.get("bias"), h5py.Dataset) and group["bias"].ndim == 3   # else one per channel
    bias = r.integers(group, "bias", where, tuple(out) if per_neuron else (out[0],))
    if "neuron" not in group or not isinstance(group["neuron"], h5py.Group):
        raise r.fail(where, "missing group 'neuron'")
    neuron, nwhere = group["neuron"], f"{where}/neuron"
    neuron_type = r.text(neuron, "type", nwhere)
    T = network.time_steps
    p = {k: r.scalar(neuron, k, nwhere, low, high) for k, (low, high) in {
        "timeSteps": (T, T), "readout": (0, 1), "levels": (0, (1 << T) - 1), "scaleExp": (0, chip.STATE_BITS - 1),
        "vThMant": (1, chip.STATE_LIMIT), "accumulateShift": (1, chip.INPUT_BITS_MAX), "phase": (0, 1 << 31)}.items()}
    model = _neuron_kind(r, neuron_type, bool(p["readout"]), network, nwhere).read_netx(r, neuron, nwhere, p)
    graded = r.scalar(neuron, "gradedSpike", nwhere, 0, 1) if "gradedSpike" in neuron else 0
    expected_graded = model.netx_keys(T).get("gradedSpike", 0)
    layer = Layer([main], model, bias, accumulate_shift=p["accumulateShift"])
    index = len(network.layers)
    network.layers.append(layer)        # in place while its timing is derived from the graph
    try:
        checks = {"levels": (layer.is_readout or p["levels"] >= 1, f"outside 1..{(1 << T) - 1}"),
                  "scaleExp": (layer.is_readout or p["scaleExp"] >= T - 1, f"below T - 1 = {T - 1}"),
                  "vThMant": (p["vThMant"] == layer.threshold(T),
                              f"is not 2**(T-1) * 2**scaleExp = {layer.threshold(T)}"),
                  "accumulateShift": (p["accumulateShift"] == network.message_bits(main.source),
                                      f"is not the {network.message_bits(main.source)} bit(s) its source sends "
                                      "per step"),
                  "gradedSpike": (graded == expected_graded, f"is {graded}, not {expected_graded} (a {model.kind} "
                                                             f"layer of a {network.encoding} network)"),
                  "phase": (p["phase"] == network.accumulate_start(index),
                            f"is not the pipeline offset {network.accumulate_start(index)}")}
    finally:
        network.layers.pop()
    for key, (ok, why) in checks.items():
        if not ok:
            raise r.fail(nwhere, f"'{key}' {why}")
    return layer
