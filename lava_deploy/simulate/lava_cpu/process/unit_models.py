"""ProcessModels of the Transformer's nodes (``units.py``): bit-accurate fixed point.

Their arithmetic is the reference's: the signed emit by threshold subtractions,
the function units' integer functions from :mod:`lava_deploy.network.functions`
(through the node's own neuron object, rebuilt from its netx keys), and the
product's spike identity with the bilinear forms of :mod:`lava_deploy.network.product`
(numpy's einsum: no torch inside Lava's processes).
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType

from lava_deploy.network import NEURON_KINDS
from lava_deploy.network.product import attention_product
from lava_deploy.simulate.lava_cpu.process.models import _AccumulateEmitModel, _cpu_model, _reports_errors, _stream_step
from lava_deploy.simulate.lava_cpu.process.units import CodeUnit, ProductUnit


def _chw(x: np.ndarray) -> np.ndarray:
    """Lava's (W, H, C) (or flat) array as a batch of one in PyTorch's (C, H, W) order."""
    return x.transpose(2, 1, 0)[None] if x.ndim == 3 else x.reshape(1, -1, 1, 1)


def _lava(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A batch of one (C, H, W) array back in Lava's order ``shape``."""
    return x[0].transpose(2, 1, 0) if len(shape) == 3 else x.reshape(shape)


class _UnitModel(_AccumulateEmitModel):
    """Emit from (v, sign), accumulate, and at the accumulation's end load the next sample into (v, sign).

    The Vars both processes share are typed here: integer state, 24-bit range checked every step.
    """

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    u: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    sign: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=2)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    stream_origin: np.ndarray = LavaPyType(np.ndarray, np.int64)
    first_sample: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        kind, keys = proc_params["neuron"]
        self.neuron = NEURON_KINDS[kind].from_netx(keys)
        self.vth = self.neuron.threshold(self.T)

    def receive(self) -> None:
        """Take this step's input and fold it into the accumulation register."""
        self.u = self.u * (1 << self.shift) + self.a_in.recv()
        self.check_range(self.u)

    def potential(self) -> np.ndarray:
        """The accumulated potential before the bias."""
        return self.u

    def restart(self) -> None:
        """Clear the accumulation registers for the next sample."""
        self.u = np.zeros_like(self.u)

    def load(self, u: np.ndarray) -> None:
        """The emit registers of potential u: magnitude and sign of the code to emit, at scale S."""
        if self.neuron.kind == "signed-emit":
            S, clamp = 1 << self.neuron.scale_exp, self.neuron.clamp
            negative = u < 0
            self.sign = np.where(negative, -1, 1)
            self.v = np.where(negative, np.minimum(-u, clamp - S + 1) + S - 1, np.minimum(u, clamp))
        else:
            codes = _lava(self.neuron.integer_codes(_chw(u)), u.shape)
            self.sign, self.v = np.sign(codes), np.abs(codes) << self.neuron.scale_exp

    @_reports_errors
    def run_spk(self) -> None:
        t = _stream_step(self)
        if t < self.first_step:        # nothing has reached this node yet
            self.receive()
            self.restart()
            self.s_out.send(np.zeros(self.s_out.shape, np.int32))
            return
        step = (t - self.first_step) % self.T
        theta = self.vth >> step
        fired = self.v >= theta
        self.v = self.v - fired * theta
        spikes = (fired * self.sign).astype(np.int32)
        self._record(spikes, *divmod(t - self.first_step - self.T, self.T))
        self.receive()
        if step == self.T - 1:      # accumulation complete: the sample moves to the emit registers
            u = self.potential() + self.bias
            self.check_range(u)
            self.load(u)
            self.restart()
        self.s_out.send(spikes)


@_cpu_model(CodeUnit, "bit_accurate_loihi", "fixed_pt")
class PyCodeUnitModelFixed(_UnitModel):
    """Signed neuron or function unit."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)


@_cpu_model(ProductUnit, "bit_accurate_loihi", "fixed_pt")
class PyProductUnitModelFixed(_UnitModel):
    """The product's identity on the prefixes of A and B, ``P <- 4P + 2(a B + A b) + a b`` (int64), then ``M P``."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    b_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_prefix: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    b_prefix: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.mode, self.heads, self.multiplier = proc_params["product"]

    def _bilinear(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return _lava(attention_product(self.mode, self.heads, _chw(a), _chw(b), einsum=np.einsum), self.u.shape)

    def receive(self) -> None:
        a, b = (port.recv().astype(np.int64) for port in (self.a_in, self.b_in))
        self.u = 4 * self.u + 2 * (self._bilinear(a, self.b_prefix) + self._bilinear(self.a_prefix, b)) \
            + self._bilinear(a, b)
        self.a_prefix, self.b_prefix = 2 * self.a_prefix + a, 2 * self.b_prefix + b
        self.check_range(self.multiplier * self.u)

    def potential(self) -> np.ndarray:
        return self.multiplier * self.u

    def restart(self) -> None:
        super().restart()
        self.a_prefix, self.b_prefix = np.zeros_like(self.a_prefix), np.zeros_like(self.b_prefix)
