"""Lava Processes of the spiking network: neurons (bit-serial and graded), input source, logit sink.

This folder holds Processes and their ProcessModels only: Lava's compiler
imports every .py file beside a Process definition.
"""
from __future__ import annotations

import typing as ty

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort, RefPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class AccumulateEmit(AbstractProcess):
    """The accumulate-then-emit neuron (docs/neuron.md, section 3), CUBA's interface.

    Accumulate T steps, ``u <- (u << accumulate_shift) + a_in``, add ``bias``;
    then emit T steps, most significant bit first, ``s = v >= vth >> j``,
    ``v <- v - s * (vth >> j)``. Two registers (u accumulates sample n+1 while
    v emits sample n) let a new sample in every T steps.

    Args:
        shape: neuron array shape (Lava order, e.g. (W, H, C) after a conv).
        bias: integer bias per neuron (broadcast to ``shape``).
        vth: threshold theta = 2**(T-1) * S.
        clamp: L * S; the potential is clamped to it before emitting.
        time_steps: steps per sample: T (1 for the readout of a graded network).
        accumulate_shift: bits per input step (1 for binary spikes).
        first_step: Lava time step (Lava counts from 1) at which the neuron accumulates its stream's first
            sample: the netx file's ``phase`` (counted from 0 at the input's first digit) plus one.
        readout: only accumulate, and send the whole potential (the logits)
            once per sample at the end of accumulation.
        num_samples: samples in the stream (spikes after it are not recorded).
        record_path: .npy file (N, T, neurons in PyTorch's (C, H, W) order) to
            write every spike into; None records nothing.
        error_dir: folder where a failing model writes its error.
    """

    def __init__(self, *, shape: tuple[int, ...], bias: np.ndarray, vth: int, clamp: int, time_steps: int,
                 accumulate_shift: int, first_step: int, readout: bool, num_samples: int,
                 record_path: ty.Optional[str] = None, error_dir: ty.Optional[str] = None,
                 name: ty.Optional[str] = None) -> None:
        super().__init__(shape=shape, time_steps=time_steps, accumulate_shift=accumulate_shift, first_step=first_step,
                         readout=readout, num_samples=num_samples, record_path=record_path,
                         error_dir=error_dir, name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.u = Var(shape=shape, init=0)
        self.v = Var(shape=shape, init=0)
        self.bias = Var(shape=shape, init=np.broadcast_to(bias, shape).copy())
        self.vth = Var(shape=(1,), init=vth)
        self.clamp = Var(shape=(1,), init=clamp)
        _add_stream_vars(self)

    def clear_state(self) -> None:
        """Empty both registers (the reset-per-sample loop, between runs)."""
        self.u.set(np.zeros(self.u.shape))
        self.v.set(np.zeros(self.v.shape))


class GradedEmit(AbstractProcess):
    """The graded neuron (docs/neuron.md, section 7): one step per sample, the code as one graded spike.

    Each step from ``first_step`` on, ``u = a_in + bias`` (the sources' codes arrive whole), and the neuron
    sends ``clip(u >> scale_exp, 0, levels)`` as its payload at the end of that step; zero is no spike.
    Nothing is kept from one step to the next, so a new sample enters every step.

    Args:
        shape: neuron array shape (Lava order).
        bias: integer bias per neuron (broadcast to ``shape``).
        scale_exp: F: one code step is 2**F potential units.
        levels: L, the largest code.
        first_step: Lava time step (from 1) at which sample 0 arrives: the file's ``phase`` plus one.
        num_samples: samples in the stream (payloads after it are not recorded).
        record_path: .npy file (N, 1, neurons in PyTorch's (C, H, W) order) for every payload; None: none.
        error_dir: folder where a failing model writes its error.
    """

    def __init__(self, *, shape: tuple[int, ...], bias: np.ndarray, scale_exp: int, levels: int, first_step: int,
                 num_samples: int, record_path: ty.Optional[str] = None, error_dir: ty.Optional[str] = None,
                 name: ty.Optional[str] = None) -> None:
        super().__init__(shape=shape, first_step=first_step, num_samples=num_samples, record_path=record_path,
                         error_dir=error_dir, name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.bias = Var(shape=shape, init=np.broadcast_to(bias, shape).copy())
        self.scale_exp = Var(shape=(1,), init=scale_exp)
        self.levels = Var(shape=(1,), init=levels)
        _add_stream_vars(self)

    def clear_state(self) -> None:
        """Nothing to empty: no state outlives a step."""


class DigitSource(AbstractProcess):
    """Streams input codes as T digit planes per sample (one, whole, in a graded network), most significant first.

    Reads the codes from a .npy file inside its own model (no per-sample
    ``Var.set``), sends digit j of sample n at step ``1 + n T + j`` and each
    sample's label (plus one, so zero means none) at its first step.

    Args:
        shape: output shape (Lava order).
        codes_path: .npy of int codes, (N, C, H, W).
        labels_path: .npy of int labels, (N,).
        time_steps: steps (digit planes) per sample: T, or 1 graded.
        digit_bits: bits per digit plane (1: binary spikes).
        lava_order: "whc" to send (W, H, C) planes for a conv, "flat" for a dense layer.

    Var ``stream_length`` limits how many samples a stream holds (a reset loop streams one).
    """

    def __init__(self, *, shape: tuple[int, ...], codes_path: str, labels_path: str, time_steps: int,
                 digit_bits: int, lava_order: str, stream_length: int = np.iinfo(np.int32).max,
                 error_dir: ty.Optional[str] = None, name: ty.Optional[str] = None) -> None:
        super().__init__(shape=shape, codes_path=codes_path, labels_path=labels_path, time_steps=time_steps,
                         digit_bits=digit_bits, lava_order=lava_order, error_dir=error_dir, name=name)
        self.s_out = OutPort(shape=shape)
        self.label_out = OutPort(shape=(1,))
        _add_stream_vars(self)
        self.stream_length = Var(shape=(1,), init=stream_length)


class LogitSink(AbstractProcess):
    """Receives the readout layer's potentials once per sample and keeps them.

    Writes logits (N, classes) and labels (N,) into .npy files and the number of
    finished samples into a small progress file, so that nobody reads Vars.

    Args:
        num_classes: readout neurons.
        first_step: the readout layer's first accumulation step (Lava's count, from 1); sample n's
            logits arrive at ``first_step + n T + T - 1``.
        time_steps: steps per sample: T, or 1 graded.
        num_samples: N.
        out_dir: folder for logits.npy, labels.npy and progress.npy.
    """

    def __init__(self, *, num_classes: int, first_step: int, time_steps: int, num_samples: int, out_dir: str,
                 error_dir: ty.Optional[str] = None, name: ty.Optional[str] = None) -> None:
        super().__init__(num_classes=num_classes, first_step=first_step, time_steps=time_steps, num_samples=num_samples,
                         out_dir=out_dir, error_dir=error_dir, name=name)
        self.a_in = InPort(shape=(num_classes,))
        self.label_in = InPort(shape=(1,))
        _add_stream_vars(self)


def _add_stream_vars(process: AbstractProcess) -> None:
    """Where the sample stream starts: the Lava step before its step 1, and the index of its first sample.

    A pipelined run never changes them; a reset-and-rerun loop restarts the
    stream at every sample by setting them (and the neurons' state).
    """
    process.stream_origin = Var(shape=(1,), init=0)
    process.first_sample = Var(shape=(1,), init=0)


class SpikeDelay(AbstractProcess):
    """Holds spikes for ``delay`` steps: aligns a residual shortcut with the main branch.

    The shortcut leaves its source layers earlier than the main branch reaches
    the layer they meet in; held back by that many steps, both carry the
    same sample's bits in the same accumulation window.

    Args:
        shape: spike frame shape (Lava order).
        delay: steps to hold each frame (>= 1).
        error_dir: folder where a failing model writes its error.
    """

    def __init__(self, *, shape: tuple[int, ...], delay: int, error_dir: ty.Optional[str] = None,
                 name: ty.Optional[str] = None) -> None:
        super().__init__(shape=shape, delay=delay, error_dir=error_dir, name=name)
        self.s_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)


class SpikeReplay(AbstractProcess):
    """Sends a recorded spike train, one frame per step, read from a .npy file inside its model.

    Args:
        shape: frame shape (Lava order: the receiving port's shape).
        spikes_path: .npy of (steps, *shape) integers; frame t - 1 goes out at step t.
    """

    def __init__(self, *, shape: tuple[int, ...], spikes_path: str, error_dir: ty.Optional[str] = None,
                 name: ty.Optional[str] = None) -> None:
        super().__init__(shape=shape, spikes_path=spikes_path, error_dir=error_dir, name=name)
        self.s_out = OutPort(shape=shape)


class SpikeRecorder(AbstractProcess):
    """Writes every frame it receives into a (steps, *shape) .npy file: no Var reads afterwards.

    Args:
        shape: frame shape (Lava order).
        record_path: .npy of (steps, *shape), created by the caller.
    """

    def __init__(self, *, shape: tuple[int, ...], record_path: str, error_dir: ty.Optional[str] = None,
                 name: ty.Optional[str] = None) -> None:
        super().__init__(shape=shape, record_path=record_path, error_dir=error_dir, name=name)
        self.a_in = InPort(shape=shape)


class BiasReplay(AbstractProcess):
    """Writes a new bias into a neuron population every step: graded input, as lava-dl feeds input neurons.

    lava-dl's tutorials drive a netx input neuron layer through its neurons'
    ``bias_mant``; this process sets it for each step from a file, through a
    reference port (written after step t, so frame t holds during step t + 1;
    frame 0 is the Var's initial value, set by the caller).

    Args:
        shape: the neurons' shape (Lava order).
        bias_path: .npy of (steps, *shape) integers.
    """

    def __init__(self, *, shape: tuple[int, ...], bias_path: str, error_dir: ty.Optional[str] = None,
                 name: ty.Optional[str] = None) -> None:
        super().__init__(shape=shape, bias_path=bias_path, error_dir=error_dir, name=name)
        self.bias = RefPort(shape=shape)

    def connect_var(self, var: Var) -> None:
        """Drive ``var`` (e.g. ``LIF.bias_mant``)."""
        self.bias.connect_var(var)
