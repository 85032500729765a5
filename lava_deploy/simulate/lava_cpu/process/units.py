"""Lava Processes of a spiking Transformer's nodes (``docs/transformer-arithmetic.md``): the signed neuron and
the function units (:class:`CodeUnit`), and the product of two spiking activations (:class:`ProductUnit`).

Both have the accumulate-then-emit neuron's timing and stream Vars (a new sample every T steps, two registers);
their models are in ``unit_models.py`` beside this file.
"""
from __future__ import annotations

import typing as ty

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var

from lava_deploy.simulate.lava_cpu.process.process import _add_stream_vars


class CodeUnit(AbstractProcess):
    """A node that accumulates like the neuron (``u <- (u << accumulate_shift) + a_in``, bias once) and emits
    signed spikes: a signed neuron (threshold subtractions on the potential's magnitude) or a function unit
    (the shared integer function of its input codes, then the same subtractions on the result).

    Args:
        shape: node shape in Lava's order.
        bias: integer bias per neuron, in Lava's order.
        neuron: ``(kind, netx keys)`` of the node's neuron model, rebuilt inside the model.
        time_steps, accumulate_shift, first_step, num_samples, record_path, error_dir: as
            :class:`~lava_deploy.simulate.lava_cpu.process.process.AccumulateEmit`.
    """

    def __init__(self, *, shape: tuple[int, ...], bias: np.ndarray, neuron: tuple[str, dict], time_steps: int,
                 accumulate_shift: int, first_step: int, num_samples: int, record_path: ty.Optional[str] = None,
                 error_dir: ty.Optional[str] = None, name: ty.Optional[str] = None) -> None:
        super().__init__(shape=shape, neuron=neuron, time_steps=time_steps, accumulate_shift=accumulate_shift,
                         first_step=first_step, readout=False, num_samples=num_samples, record_path=record_path,
                         error_dir=error_dir, name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        _add_unit_vars(self, shape, bias)


class ProductUnit(AbstractProcess):
    """The product of two spiking activations, then its neuron model (a signed neuron or a function unit).

    Receives operand A's spike planes on ``a_in`` and B's on ``b_in``; keeps the prefixes A, B and the
    accumulator ``P <- 4P + 2(a B + A b) + a b``; after T steps ``u = M P + bias``, emitted as :class:`CodeUnit`.

    Args:
        shape: output shape in Lava's order.
        a_shape, b_shape: the operands' shapes in Lava's order.
        product: ``(mode, heads, multiplier)`` of the product synapse.
        others: as :class:`CodeUnit`.
    """

    def __init__(self, *, shape: tuple[int, ...], a_shape: tuple[int, ...], b_shape: tuple[int, ...],
                 bias: np.ndarray, product: tuple[str, int, int], neuron: tuple[str, dict], time_steps: int,
                 first_step: int, num_samples: int, record_path: ty.Optional[str] = None,
                 error_dir: ty.Optional[str] = None, name: ty.Optional[str] = None) -> None:
        super().__init__(shape=shape, product=product, neuron=neuron, time_steps=time_steps, accumulate_shift=1,
                         first_step=first_step, readout=False, num_samples=num_samples, record_path=record_path,
                         error_dir=error_dir, name=name)
        self.a_in = InPort(shape=a_shape)
        self.b_in = InPort(shape=b_shape)
        self.s_out = OutPort(shape=shape)
        self.a_prefix = Var(shape=a_shape, init=0)
        self.b_prefix = Var(shape=b_shape, init=0)
        _add_unit_vars(self, shape, bias)


def _add_unit_vars(process: AbstractProcess, shape: tuple[int, ...], bias: np.ndarray) -> None:
    """The two registers (u accumulates, v and the sign emit), the bias, and the stream Vars."""
    process.u = Var(shape=shape, init=0)
    process.v = Var(shape=shape, init=0)
    process.sign = Var(shape=shape, init=0)
    process.bias = Var(shape=shape, init=np.broadcast_to(bias, shape).copy())
    _add_stream_vars(process)
