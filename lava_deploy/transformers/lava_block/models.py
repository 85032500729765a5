"""Float ProcessModels of the encoder block's Processes (float64, CPU).

The numerical kernels are the PyTorch simulation's own (the multi-threshold
firing rule, the decomposed softmax and LayerNorm, GELU), applied to float64
arrays; the dynamics (potentials, running sums, the product's tracker, the
per-sample reset) live here as the models' state.
"""
from __future__ import annotations

import functools
import os
import traceback

import numpy as np
import torch
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lava_deploy.transformers.encoder import exact_piece, layernorm_parts, softmax_parts
from lava_deploy.transformers.lava_block.process import (CompensatedFunction, EmbeddingSource, MultiThresholdNeuron,
                                                         SpikeProduct, StepSink, TokenDense)
from lava_deploy.transformers.spiking import multi_threshold_fire

torch.set_num_threads(1)        # one Lava process per OS process already


def _float_model(proc: type):
    """Lava's three class decorators of a floating-point CPU ProcessModel in one, and error reporting."""
    def decorate(cls: type) -> type:
        return implements(proc=proc, protocol=LoihiProtocol)(requires(CPU)(tag("floating_pt")(_reports_errors(cls))))
    return decorate


class _Stepped(PyLoihiProcessModel):
    """Knows the step within the current sample (1..T); state is forgotten at each sample's first step."""

    def sample_step(self) -> int:
        return (self.time_step - 1) % self.proc_params["time_steps"] + 1


def _reports_errors(cls: type) -> type:
    """Write a failing run_spk's exception into the run's ``error_dir`` (Lava's runtime hides it) and re-raise."""
    run_spk = cls.run_spk

    @functools.wraps(run_spk)
    def wrapper(self):
        try:
            run_spk(self)
        except Exception:
            error_dir = self.proc_params.get("error_dir")
            if error_dir:
                with open(os.path.join(error_dir, f"{os.getpid()}.txt"), "w") as handle:
                    handle.write(f"{type(self).__name__} at step {self.time_step}:\n{traceback.format_exc()}")
            raise
    cls.run_spk = wrapper
    return cls


@functools.lru_cache(maxsize=None)
def _mapped(path: str, writable: bool = False) -> np.ndarray:
    return np.load(path, mmap_mode="r+" if writable else "r")


@_float_model(EmbeddingSource)
class PyEmbeddingSourceModel(_Stepped):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    mask_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def run_spk(self) -> None:
        inputs, mask = _mapped(self.proc_params["inputs_path"]), _mapped(self.proc_params["mask_path"])
        sample = min((self.time_step - 1) // self.proc_params["time_steps"], len(inputs) - 1)
        self.s_out.send(np.asarray(inputs[sample], dtype=float))
        self.mask_out.send(np.asarray(mask[sample], dtype=float))


@_float_model(MultiThresholdNeuron)
class PyMultiThresholdNeuronModel(_Stepped):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    base: np.ndarray = LavaPyType(np.ndarray, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)

    def run_spk(self) -> None:
        current = self.a_in.recv()
        if self.sample_step() == 1:
            self.v = np.zeros_like(self.v)
        potential = self.v + current
        spikes = multi_threshold_fire(torch.from_numpy(potential), torch.from_numpy(self.base),
                                      self.proc_params["levels"]).numpy()
        self.v = potential - spikes
        self.s_out.send(spikes)


@_float_model(TokenDense)
class PyTokenDenseModel(PyLoihiProcessModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    weights: np.ndarray = LavaPyType(np.ndarray, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)

    def run_spk(self) -> None:
        self.a_out.send(self.s_in.recv() @ self.weights.T + self.bias)


@_float_model(SpikeProduct)
class PySpikeProductModel(_Stepped):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    b_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def _heads(self, x: np.ndarray) -> np.ndarray:
        tokens, hidden, heads = (self.proc_params[k] for k in ("tokens", "hidden", "heads"))
        return x.reshape(tokens, heads, hidden // heads).transpose(1, 0, 2)      # (heads, tokens, d)

    def run_spk(self) -> None:
        a, b = self.a_in.recv(), self._heads(self.b_in.recv())
        if self.proc_params["kind"] == "scores":
            a, b = self._heads(a), b.transpose(0, 2, 1)
        t = self.sample_step()
        if t == 1:
            self.sum_a, self.sum_b, self.sum_k, self.emitted = np.zeros_like(a), np.zeros_like(b), 0.0, 0.0
        self.sum_k = self.sum_k + a @ b + a @ self.sum_b + self.sum_a @ b
        self.sum_a, self.sum_b = self.sum_a + a, self.sum_b + b
        cumulative = self.sum_k / t
        out, self.emitted = cumulative - self.emitted, cumulative
        if self.proc_params["kind"] == "context":
            out = out.transpose(1, 0, 2).reshape(self.proc_params["tokens"], self.proc_params["hidden"])
        self.a_out.send(out)


@_float_model(CompensatedFunction)
class PyCompensatedFunctionModel(_Stepped):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    mask_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)

    def function(self, mean: np.ndarray, mask: np.ndarray) -> np.ndarray:
        kind, x = self.proc_params["kind"], torch.from_numpy(mean)
        if kind == "softmax":
            return softmax_parts(x * self.proc_params["scale"], torch.from_numpy(mask > 0)).numpy()
        if kind == "layernorm":
            norm = torch.nn.LayerNorm(x.shape[-1], eps=self.proc_params["eps"], dtype=torch.float64)
            norm.weight.data = torch.from_numpy(self.proc_params["weight"])
            norm.bias.data = torch.from_numpy(self.proc_params["bias"])
            with torch.no_grad():
                return layernorm_parts(x, norm).numpy()
        return exact_piece("gelu", x).numpy()

    def run_spk(self) -> None:
        current, mask = self.a_in.recv(), self.mask_in.recv()
        t = self.sample_step()
        if t == 1:
            self.total, self.emitted = 0.0, 0.0
        self.total = self.total + current
        cumulative = t * self.function(self.total / t, mask)
        out, self.emitted = cumulative - self.emitted, cumulative
        self.a_out.send(out)


@_float_model(StepSink)
class PyStepSinkModel(_Stepped):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)

    def run_spk(self) -> None:
        record = _mapped(self.proc_params["record_path"], writable=True)
        sample = (self.time_step - 1) // self.proc_params["time_steps"]
        value = self.a_in.recv()
        if sample < len(record):
            record[sample, self.sample_step() - 1] = value
