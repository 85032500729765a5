"""ProcessModels: bit-accurate fixed point and float, side by side as in lava.proc.lif.

Every model writes a failure into ``error_dir`` before re-raising it, because
Lava's runtime only reports "1 Exception(s) occurred" to the caller.
"""
from __future__ import annotations

import functools
import os
import traceback
from collections import deque

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort, PyRefPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv.process import Conv

from lava_deploy.simulate.lava_cpu.process.process import (AccumulateEmit, BiasReplay, DigitSource, GradedEmit,
                                                           LogitSink, SpikeDelay, SpikeRecorder, SpikeReplay)

#: Loihi's state and message width.
STATE_MIN, STATE_MAX = -(1 << 23), (1 << 23) - 1


def _cpu_model(proc: type, *tags: str):
    """Lava's three class decorators of a CPU ProcessModel (implements, requires, tag) in one."""
    def decorate(cls: type) -> type:
        return implements(proc=proc, protocol=LoihiProtocol)(requires(CPU)(tag(*tags)(cls)))
    return decorate


def _reports_errors(run_spk):
    """Write a model's exception (one line, with the process name) where the runner finds it."""
    @functools.wraps(run_spk)
    def wrapper(self):
        try:
            run_spk(self)
        except Exception as exc:
            error_dir = self.proc_params.get("error_dir")
            if error_dir:
                where = traceback.extract_tb(exc.__traceback__)[-1]
                name = self.proc_params.get("name") or type(self).__name__
                message = f"{name} at step {self.time_step}: {type(exc).__name__}: {exc} " \
                          f"({os.path.basename(where.filename)}:{where.lineno})"
                with open(os.path.join(error_dir, f"{os.getpid()}.txt"), "w") as handle:
                    handle.write(message.replace("\n", " "))
            raise
    return wrapper


@functools.lru_cache(maxsize=None)
def _mapped(path: str, writable: bool = False) -> np.ndarray:
    """A job file as a memory map, opened once per process (each model runs in its own), never shipped through Vars."""
    return np.load(path, mmap_mode="r+" if writable else "r")


def _stream_step(model: PyLoihiProcessModel) -> int:
    """Step counted from the start of the current sample stream (1 at its first step)."""
    return model.time_step - int(model.stream_origin[0])


class _NeuronModel(PyLoihiProcessModel):
    """What both neuron models share: the stream's first step, the 24-bit check, the spike record."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.first_step = proc_params["first_step"]
        self.num_samples = proc_params["num_samples"]
        self.record_path = proc_params.get("record_path")
        self.record = None

    def check_range(self, x: np.ndarray) -> None:
        """Fail loudly where Loihi's 24-bit state would wrap."""
        if x.size and (x.min() < STATE_MIN or x.max() > STATE_MAX):
            raise OverflowError(f"membrane potential {int(x.max()) if x.max() > STATE_MAX else int(x.min())} "
                                "outside Loihi's 24-bit state")

    def _record(self, sent: np.ndarray, sample: int, j: int) -> None:
        """Keep what was sent in step j of the stream's ``sample`` (negative: not yet a sample of it)."""
        if self.record_path is None or sample < 0:
            return
        sample += int(self.first_sample[0])
        if sample >= self.num_samples:
            return
        if self.record is None:
            self.record = _mapped(self.record_path, writable=True)
        # Lava's (W, H, C) order to PyTorch's (C, H, W), the reference's layout.
        self.record[sample, j] = sent.transpose().reshape(-1)


class _AccumulateEmitModel(_NeuronModel):
    """The neuron's dynamics; subclasses fix the number type."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.T = proc_params["time_steps"]
        self.shift = proc_params["accumulate_shift"]
        self.readout = proc_params["readout"]

    @_reports_errors
    def run_spk(self) -> None:
        a_in = self.a_in.recv()
        t = _stream_step(self)
        spikes = np.zeros_like(self.u)
        if t < self.first_step:        # nothing has reached this layer yet
            self.s_out.send(spikes)
            return
        step = (t - self.first_step) % self.T
        if not self.readout:
            theta = self.vth[0] // (1 << step)     # theta >> j, exact: theta is a power of two
            fired = self.v >= theta
            self.v = self.v - fired * theta
            spikes[:] = fired
            self._record(fired, *divmod(t - self.first_step - self.T, self.T))
        self.u = self.u * (1 << self.shift) + a_in
        self.check_range(self.u)
        if step == self.T - 1:      # accumulation complete: move the sample to the emit register
            self.u = self.u + self.bias
            self.check_range(self.u)
            if self.readout:
                spikes[:] = self.u
            else:
                self.v = np.minimum(self.u, self.clamp[0])
            self.u = np.zeros_like(self.u)
        self.s_out.send(spikes)


@_cpu_model(AccumulateEmit, "bit_accurate_loihi", "fixed_pt")
class PyAccumulateEmitModelFixed(_AccumulateEmitModel):
    """Bit-accurate model: integer state, 24-bit range checked every step."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    u: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    clamp: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    stream_origin: np.ndarray = LavaPyType(np.ndarray, np.int64)
    first_sample: np.ndarray = LavaPyType(np.ndarray, np.int64)


@_cpu_model(AccumulateEmit, "floating_pt")
class PyAccumulateEmitModelFloat(_AccumulateEmitModel):
    """Float model: the same arithmetic in float64 (exact for these integers)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    u: np.ndarray = LavaPyType(np.ndarray, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)
    vth: np.ndarray = LavaPyType(np.ndarray, float)
    clamp: np.ndarray = LavaPyType(np.ndarray, float)
    stream_origin: np.ndarray = LavaPyType(np.ndarray, np.int64)
    first_sample: np.ndarray = LavaPyType(np.ndarray, np.int64)


@_cpu_model(GradedEmit, "bit_accurate_loihi", "fixed_pt")
class PyGradedEmitModelFixed(_NeuronModel):
    """Bit-accurate model: the code of ``a_in + bias`` as the payload, floor by an arithmetic right shift,
    24-bit range checked every step. (No float model: the worker runs fixed_pt.)"""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    scale_exp: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=5)
    levels: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    stream_origin: np.ndarray = LavaPyType(np.ndarray, np.int64)
    first_sample: np.ndarray = LavaPyType(np.ndarray, np.int64)

    @_reports_errors
    def run_spk(self) -> None:
        a_in = self.a_in.recv()
        t = _stream_step(self)
        codes = np.zeros(self.bias.shape, np.int64)
        if t >= self.first_step:        # before, nothing of the stream has reached this layer
            u = a_in.astype(np.int64) + self.bias
            self.check_range(u)
            codes = np.clip(u >> int(self.scale_exp[0]), 0, int(self.levels[0]))
            self._record(codes, t - self.first_step, 0)
        self.s_out.send(codes)


@_cpu_model(DigitSource, "fixed_pt", "floating_pt")
class PyDigitSourceModel(PyLoihiProcessModel):
    """Reads codes from disk and sends their digit planes; labels on a second port."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    label_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    stream_origin: np.ndarray = LavaPyType(np.ndarray, np.int64)
    first_sample: np.ndarray = LavaPyType(np.ndarray, np.int64)
    stream_length: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.T = proc_params["time_steps"]
        self.bits = proc_params["digit_bits"]
        self.order = proc_params["lava_order"]
        self.codes = None

    @_reports_errors
    def run_spk(self) -> None:
        if self.codes is None:
            self.codes = _mapped(self.proc_params["codes_path"])
            self.labels = _mapped(self.proc_params["labels_path"])
        sample, j = divmod(_stream_step(self) - 1, self.T)
        plane = np.zeros(self.s_out.shape, dtype=np.int32)
        label = np.zeros((1,), dtype=np.int32)
        if sample < self.stream_length[0] and sample + self.first_sample[0] < len(self.codes):
            sample += int(self.first_sample[0])
            digits = (np.asarray(self.codes[sample], dtype=np.int64) >> (self.bits * (self.T - 1 - j))) \
                & ((1 << self.bits) - 1)
            plane[:] = digits.transpose() if self.order == "whc" else digits.reshape(-1)
            if j == 0:
                label[0] = self.labels[sample] + 1
        self.s_out.send(plane)
        self.label_out.send(label)


@_cpu_model(LogitSink, "fixed_pt", "floating_pt")
class PyLogitSinkModel(PyLoihiProcessModel):
    """Keeps each sample's logits and label; counts finished samples in a file."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    label_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    stream_origin: np.ndarray = LavaPyType(np.ndarray, np.int64)
    first_sample: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.T = proc_params["time_steps"]
        self.first_step = proc_params["first_step"]
        self.num_samples = proc_params["num_samples"]
        self.pending_labels: deque = deque()
        self.files = None

    @_reports_errors
    def run_spk(self) -> None:
        logits = self.a_in.recv()
        label = int(self.label_in.recv()[0])
        if label:        # labels travel beside the spikes, first in, first out
            self.pending_labels.append(label - 1)
        t = _stream_step(self)
        sample, step = divmod(t - self.first_step, self.T)
        sample += int(self.first_sample[0])
        if t < self.first_step or step != self.T - 1 or not 0 <= sample < self.num_samples:
            return
        if self.files is None:
            out = self.proc_params["out_dir"]
            self.files = [_mapped(os.path.join(out, f"{k}.npy"), writable=True)
                          for k in ("logits", "labels", "progress")]
        all_logits, labels, progress = self.files
        all_logits[sample] = logits
        labels[sample] = self.pending_labels.popleft()
        progress[0] = sample + 1
        if sample + 1 == self.num_samples:
            for f in self.files:
                f.flush()


@_cpu_model(SpikeDelay, "fixed_pt", "floating_pt")
class PySpikeDelayModel(PyLoihiProcessModel):
    """Sends at step t the frame it received at step t - delay (silence before)."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.held = deque(np.zeros(proc_params["shape"], np.int32) for _ in range(proc_params["delay"]))

    @_reports_errors
    def run_spk(self) -> None:
        self.held.append(self.s_in.recv())
        self.s_out.send(self.held.popleft())


@_cpu_model(SpikeReplay, "fixed_pt", "floating_pt")
class PySpikeReplayModel(PyLoihiProcessModel):
    """Frame t - 1 of the file at step t; silence after the last frame."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    @_reports_errors
    def run_spk(self) -> None:
        frames, t = _mapped(self.proc_params["spikes_path"]), self.time_step - 1
        self.s_out.send(np.asarray(frames[t], np.int32) if t < len(frames) else np.zeros(self.s_out.shape, np.int32))


@_cpu_model(SpikeRecorder, "fixed_pt", "floating_pt")
class PySpikeRecorderModel(PyLoihiProcessModel):
    """Frame of step t into row t - 1 of the file."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)

    @_reports_errors
    def run_spk(self) -> None:
        frame = self.a_in.recv()
        record, t = _mapped(self.proc_params["record_path"], writable=True), self.time_step - 1
        if t < len(record):
            record[t] = frame
            record.flush()


@_cpu_model(BiasReplay, "fixed_pt", "floating_pt")
class PyBiasReplayModel(PyLoihiProcessModel):
    """After step t, frame t of the file into the neurons' bias (the bias of step t + 1), where it changes."""

    bias: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, np.int32)

    def post_guard(self) -> bool:
        frames, t = _mapped(self.proc_params["bias_path"]), self.time_step
        return t < len(frames) and not np.array_equal(frames[t], frames[t - 1])

    @_reports_errors
    def run_post_mgmt(self) -> None:
        self.bias.write(np.asarray(_mapped(self.proc_params["bias_path"])[self.time_step], np.int32))
        self.bias.wait()        # written before the next step starts


@_cpu_model(Conv, "fixed_pt")
class PyConvModelFast(PyLoihiProcessModel):
    """Bit-exact replacement for lava's fixed-point Conv model, 100x faster and honouring weight_exp.

    lava's own model convolves with scipy and ignores ``weight_exp`` (lava
    issue #803). This one computes the same true convolution as one matrix
    product over im2col patches (float64 holding integers: exact below 2**53),
    then shifts by the exponent and clamps to 24 bits as Loihi does. Without
    message bits its input is unary, as in lava-nc's model: a nonzero value is
    one spike.
    """

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    kernel_size: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    stride: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    padding: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    dilation: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    groups: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    num_message_bits: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=5)
    weight_exp: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    num_weight_bits: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=5)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.matrices = None

    def _prepare(self) -> None:
        # Lava's (C_out, kW, kH, C_in) true-convolution kernel as PyTorch's (C_out, C_in, kH, kW) correlation.
        w = np.asarray(self.weight)[:, ::-1, ::-1, :].transpose(0, 3, 2, 1)
        self.groups_n = int(np.asarray(self.groups).reshape(-1)[0])
        self.matrices = [m.reshape(len(m), -1).T.astype(np.float64) for m in np.split(w, self.groups_n)]
        sw, sh = (int(x) for x in np.broadcast_to(self.stride, (2,)))
        pw, ph = (int(x) for x in np.broadcast_to(self.padding, (2,)))
        dw, dh = (int(x) for x in np.broadcast_to(self.dilation, (2,)))
        self.geometry = (w.shape[2], w.shape[3], sh, sw, ph, pw, dh, dw)
        self.shift = int(np.asarray(self.weight_exp).reshape(-1)[0])
        self.unary = int(np.asarray(self.num_message_bits).reshape(-1)[0]) == 0

    def _correlate(self, x: np.ndarray) -> np.ndarray:
        kh, kw, sh, sw, ph, pw, dh, dw = self.geometry
        x = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
        windows = np.lib.stride_tricks.sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(1, 2))
        windows = windows[:, ::sh, ::sw, ::dh, ::dw]           # (C, H', W', kh, kw)
        out_h, out_w = windows.shape[1:3]
        outputs = []
        for group, matrix in zip(np.split(windows, self.groups_n), self.matrices):
            patches = group.transpose(1, 2, 0, 3, 4).reshape(out_h * out_w, -1)
            outputs.append((patches @ matrix).T.reshape(-1, out_h, out_w))
        return np.concatenate(outputs)

    @_reports_errors
    def run_spk(self) -> None:
        if self.matrices is None:
            self._prepare()
        self.a_out.send(self.a_buf)
        s_in = self.s_in.recv()
        if self.unary:
            s_in = s_in != 0        # any nonzero value is one spike: lava-nc's model casts unary input to bool
        s_in = s_in.astype(np.float64)
        a = np.rint(self._correlate(s_in.transpose(2, 1, 0))).astype(np.int64) << self.shift
        self.a_buf = np.clip(a.transpose(2, 1, 0), STATE_MIN, STATE_MAX).astype(np.int32)
