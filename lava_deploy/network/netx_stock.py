"""Stock lava-dl netx networks (CUBA and LIF neurons, no ``lava_deploy`` group), described without Lava.

lava-deploy runs such a file with lava-dl's own ``netx.hdf5.Network``; this
module reads just enough of it, from the HDF5 headers and a few small keys,
to pick the backend, to check the user's input against the network's input
before any work, and to size the record of every layer. The shapes follow
netx's own rules (``lava/lib/dl/netx/hdf5.py``, lava-dl 0.6), in Lava's
(x, y, c) order:

- ``input`` with a ``neuron`` group is an input neuron layer: a block of its
  own, which lava-dl's tutorials and tests feed through its neurons' bias
  (``bias_mant``), never through spikes on the network's ``inp``;
- ``input`` without one only gives the next layer's input shape;
- ``conv``: its ``shape`` reversed; its input, the previous block's output;
- ``dense``: ``(prod(shape),)``; its input, the weight's second axis (a
  previous (x, y, c) output after a ``flatten`` group).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from lava_deploy.errors import DeployError
from lava_deploy.network.netx import _MAX_NEURONS, _MAX_SIDE, _first_line, _open, _Reader

#: Neuron types netx builds as Lava's LIF (CUBA dynamics), the ones lava-deploy runs.
LIF_TYPES = ("CUBA", "LOIHI")
#: Layer types lava-deploy runs through netx (netx 0.6 also builds 'dense_rec'; pooling it does not build).
LAYER_TYPES = ("input", "conv", "dense", "flatten")


@dataclass(frozen=True)
class StockLayer:
    """One block netx builds: its ``layer/N`` group, kind and output port shape (Lava's order)."""

    group: int
    kind: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        """Neurons in the block."""
        return int(np.prod(self.shape))


@dataclass(frozen=True)
class StockNetwork:
    """What ``netx.hdf5.Network(path)`` builds: its blocks in order and the shape of its input.

    Attributes:
        path: the file.
        layers: every block, in netx's order (``Network.layers``).
        input_shape: for spikes, ``Network.inp.shape``; with input neurons, the shape of their bias.
        input_neurons: the first block is an input neuron layer, fed through its neurons' bias.
    """

    path: Path
    layers: tuple[StockLayer, ...]
    input_shape: tuple[int, ...]
    input_neurons: bool

    @property
    def output_shape(self) -> tuple[int, ...]:
        """``Network.out.shape``."""
        return self.layers[-1].shape

    @property
    def input_flag(self) -> str:
        """The command-line option that feeds this network."""
        return "--input-bias" if self.input_neurons else "--input-spikes"


def is_stock_netx(path: str | Path) -> bool:
    """Whether ``path`` is a netx file without lava-deploy's group: a stock lava-dl network (one line if unreadable)."""
    with _open(Path(path)) as f:
        return "lava_deploy" not in f and isinstance(f.get("layer"), h5py.Group)


def read_stock_netx(path: str | Path) -> StockNetwork:
    """Describe the blocks netx builds from a stock file, refusing in one line what netx would fail on.

    Raises:
        DeployError: a layer lava-deploy does not run (type, neuron), or shapes that do not chain.
    """
    path = Path(path)
    with _open(path) as f:
        if "lava_deploy" in f:
            raise DeployError(f"{path.name} is a lava-deploy network, not a stock netx one: it runs on a dataset "
                              "(--dataset), not on recorded input")
        if not isinstance(f.get("layer"), h5py.Group):
            raise DeployError(f"{path.name}: not a netx network (no group 'layer')")
        reader = _Reader(path, f)
        try:
            return _describe(reader, f["layer"])
        except (KeyError, ValueError, TypeError, OSError, AttributeError) as exc:
            raise DeployError(f"{path.name}: damaged file: {_first_line(exc)}") from None


def _describe(r: _Reader, layers: h5py.Group) -> StockNetwork:
    names = sorted(layers, key=lambda k: int(k) if k.isdigit() else -1)
    if not names or [n for n in names if not n.isdigit()] or [int(n) for n in names] != list(range(len(names))):
        raise r.fail("layer", f"layer groups must be numbered 0..n-1, found {names}")
    blocks: list[StockLayer] = []
    input_shape: tuple[int, ...] | None = None
    input_neurons, flatten_next = False, False
    for index in range(len(names)):
        group, where = layers[str(index)], f"layer/{index}"
        if not isinstance(group, h5py.Group):
            raise r.fail(where, "must be a group")
        kind = r.text(group, "type", where)
        if kind not in LAYER_TYPES:
            raise r.fail(where, f"layer type '{kind}' is not one lava-deploy runs through netx "
                                f"({', '.join(LAYER_TYPES)})")
        if kind == "flatten":
            flatten_next = True
            continue
        shape = _shape(r, group, where)
        has_neuron = "neuron" in group
        if has_neuron:
            _check_neuron(r, group, where)
        if kind == "input":
            if index:
                raise r.fail(where, "an input layer must be layer/0")
            input_shape = shape
            if has_neuron:     # a block of its own, driven through its neurons' bias
                input_neurons = True
                blocks.append(StockLayer(index, kind, shape))
            continue
        previous = blocks[-1].shape if blocks else input_shape
        if kind == "conv":
            if not has_neuron:
                raise r.fail(where, "missing group 'neuron' (netx builds no conv layer without one)")
            expected = _conv_output(r, group, where, previous)
            if shape != expected:
                raise r.fail(where, f"'shape' {shape[::-1]} is not the convolution's output {expected[::-1]}")
            if input_shape is None:
                input_shape = previous
        else:       # dense: netx takes the input width from the weight
            shape = (int(np.prod(shape)),)
            in_features = _dense_inputs(r, group, where, shape[0])
            if previous is not None and int(np.prod(previous)) != in_features:
                raise r.fail(where, f"weight takes {in_features} inputs; the layer before gives "
                                    f"{int(np.prod(previous))}")
            if previous is not None and len(previous) > 1 and not flatten_next:
                raise r.fail(where, "a dense layer after a conv layer needs a 'flatten' layer between them")
            if input_shape is None:
                input_shape = (in_features,)
        flatten_next = False
        blocks.append(StockLayer(index, kind, shape))
    if not blocks:
        raise r.fail("layer", "no layer that netx builds a block from")
    assert input_shape is not None      # set by layer/0 or the first conv or dense layer
    return StockNetwork(r.path, tuple(blocks), input_shape, input_neurons)


def _shape(r: _Reader, group: h5py.Group, where: str) -> tuple[int, ...]:
    """netx's ``shape`` key (C, H, W or fewer) as Lava's (x, y, c) order, each side within the reader's limits."""
    shape = r.integers(group, "shape", where).reshape(-1)
    if not 1 <= shape.size <= 3 or shape.min() < 1 or shape.max() > r.max_side or np.prod(shape) > r.max_neurons:
        raise r.fail(where, f"'shape' must be 1 to 3 sides of 1..{r.max_side}, at most {r.max_neurons} neurons")
    return tuple(int(v) for v in shape[::-1])


def _check_neuron(r: _Reader, group: h5py.Group, where: str) -> None:
    neuron = group["neuron"]
    if not isinstance(neuron, h5py.Group):
        raise r.fail(where, "'neuron' must be a group")
    kind = r.text(neuron, "type", f"{where}/neuron")
    if kind not in LIF_TYPES:
        raise r.fail(f"{where}/neuron", f"neuron type '{kind}': lava-deploy runs stock netx networks of "
                                        f"{' and '.join(LIF_TYPES)} (LIF) neurons")


def _weight_shape(r: _Reader, group: h5py.Group, where: str) -> tuple[int, ...]:
    """The weight's shape, from its header alone."""
    if not isinstance(group.get("weight"), h5py.Dataset):
        raise r.fail(where, "missing key 'weight'")
    return tuple(int(v) for v in group["weight"].shape)


def _conv_output(r: _Reader, group: h5py.Group, where: str, previous: tuple[int, ...] | None) -> tuple[int, ...]:
    """The output (x, y, c) of netx's Conv on ``previous``, computed as Lava's Conv process does."""
    if previous is None:
        raise r.fail(where, "netx cannot infer this conv layer's input shape: layer/0 must be an input layer")
    if len(previous) != 3:
        raise r.fail(where, f"a conv layer needs an (x, y, c) input, the layer before gives {previous}")
    weight = _weight_shape(r, group, where)
    if len(weight) not in (4, 5) or (len(weight) == 5 and weight[4] != 1):
        raise r.fail(where, f"'weight' has shape {weight}; netx's conv weight is (out, in, kH, kW[, 1])")
    geometry = r.pairs(group, ("stride", "padding", "dilation"), where, 0, _MAX_SIDE)
    groups = r.scalar(group, "groups", where, 1, _MAX_NEURONS)
    out_c, in_c, kh, kw = weight[:4]
    if in_c * groups != previous[2] or out_c % groups:
        raise r.fail(where, f"'weight' {weight} with {groups} groups does not take {previous[2]} input channels")
    sides = []
    # netx reverses every (H, W) pair to Lava's (x, y): index 1 is x (width), index 0 is y (height).
    for axis, (size, kernel) in enumerate(((previous[0], kw), (previous[1], kh))):
        stride, pad, dilation = (geometry[k][1 - axis] for k in ("stride", "padding", "dilation"))
        if stride < 1 or dilation < 1:
            raise r.fail(where, "'stride' and 'dilation' must be at least 1")
        sides.append((size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1)
    if min(sides) < 1:
        raise r.fail(where, f"the kernel does not fit the {previous} input")
    return (sides[0], sides[1], int(out_c))


def _dense_inputs(r: _Reader, group: h5py.Group, where: str, outputs: int) -> int:
    """The inputs of netx's Dense: the weight reshaped to (outputs, -1), as netx reshapes a flat weight."""
    weight = _weight_shape(r, group, where)
    size = int(np.prod(weight))
    if len(weight) not in (1, 2) or size % outputs or not size or (len(weight) == 2 and weight[0] != outputs):
        raise r.fail(where, f"'weight' has shape {weight}; it must be ({outputs}, inputs)")
    return size // outputs
