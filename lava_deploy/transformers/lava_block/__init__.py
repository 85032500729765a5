"""One converted BERT encoder block as Lava Processes on Lava's CPU simulator (floating_pt models).

Expectation compensation with multi-threshold neurons, the same block the
PyTorch simulation runs: 21 Processes (a source, 8 neuron populations, 6
token-wise dense synapses, 2 spike products, 4 compensated functions, a sink),
wired as the block's graph, its two residual branches as second connections
into the InPort they join. A stream of samples, ``steps`` steps each, is one
Lava run; every Process forgets its state at a sample's first step.

Float, not fixed point: the compensated functions divide by t and evaluate
exp, erf and rsqrt on running means, which Loihi 2's fixed-point neurons do
not compute; the float models run the same arithmetic as the PyTorch
simulation in float64, so the two agree to rounding (a spike flips only where
a potential lies within rounding of a threshold).

This is the only module of :mod:`lava_deploy.transformers` that imports Lava.
"""
from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg

from lava_deploy.errors import DeployError
from lava_deploy.simulate.lava_cpu.session import kill_session
from lava_deploy.transformers.convert import SpikingTransformer
from lava_deploy.transformers.lava_block.process import (CompensatedFunction, EmbeddingSource, MultiThresholdNeuron,
                                                         SpikeProduct, StepSink, TokenDense)

__all__ = ["run_block"]


def _array(tensor) -> np.ndarray:
    return tensor.detach().double().numpy().copy()


def run_block(spiking: SpikingTransformer, embeddings: np.ndarray, token_valid: np.ndarray, steps: int,
              block: int = 0, timeout_s: float = 1800.0) -> np.ndarray:
    """Run encoder block ``block`` of a BERT converted by expectation compensation on Lava, sample by sample.

    Lava runs in a child process with a session of its own: a failing ProcessModel leaves Lava's other
    processes waiting for ever, so on an error, a timeout or Ctrl-C the whole session is killed.

    Args:
        spiking: the converted classifier (``ec``).
        embeddings: the block's input current per sample (N, tokens, hidden): the embedding layer's output for
            block 0.
        token_valid: real tokens (N, tokens).
        steps: time steps per sample.
        timeout_s: seconds before the run counts as hung.

    Returns:
        The block's output at every step, (N, steps, tokens, hidden), float64.

    Raises:
        DeployError: a ProcessModel failed (its traceback's last line), the run hung, or Lava exited abnormally.
    """
    if spiking.method != "ec" or spiking.classifier.family != "bert":
        raise DeployError("the Lava block runs a BERT-family block converted by expectation compensation ('ec')")
    n, tokens, hidden = embeddings.shape
    with tempfile.TemporaryDirectory(prefix="lava-deploy-block-") as folder:
        paths = {name: str(Path(folder) / f"{name}.npy") for name in ("inputs", "mask", "record")}
        errors = Path(folder) / "errors"
        errors.mkdir()
        np.save(paths["inputs"], np.asarray(embeddings, dtype=np.float64))
        np.save(paths["mask"], np.asarray(token_valid, dtype=bool))
        np.lib.format.open_memmap(paths["record"], mode="w+", dtype=np.float64,
                                  shape=(n, steps, tokens, hidden)).flush()
        child = multiprocessing.get_context("fork").Process(
            target=_run_in_session, args=(spiking, block, paths, str(errors), n, tokens, hidden, steps))
        child.start()
        deadline = time.monotonic() + timeout_s
        try:
            while child.is_alive() and time.monotonic() < deadline and not any(errors.iterdir()):
                child.join(0.5)
        finally:
            if child.is_alive() or child.exitcode != 0:
                kill_session(child.pid)    # Lava's processes, its shared memory too
                child.kill()        # a child not yet leading its session (setsid is its first step)
                child.join()
        failures = sorted(errors.glob("*.txt"))
        if failures:
            raise DeployError("a Lava process failed: " + failures[0].read_text().strip().splitlines()[-1])
        if child.exitcode != 0:
            raise DeployError("the Lava run " + (f"did not finish in {timeout_s:.0f} s" if child.exitcode is None
                                                  else f"exited with code {child.exitcode}"))
        return np.array(np.load(paths["record"], mmap_mode="r"))


def _run_in_session(spiking: SpikingTransformer, block: int, paths: dict[str, str], error_dir: str, n: int,
                    tokens: int, hidden: int, steps: int) -> None:
    """The child: a session of its own, the block's Processes, one Lava run of n * steps steps."""
    os.setsid()
    source = _build(spiking, block, paths, error_dir, tokens, hidden, steps)
    try:
        source.run(condition=RunSteps(num_steps=n * steps), run_cfg=Loihi2SimCfg(select_tag="floating_pt"))
    finally:
        source.stop()


def _build(spiking: SpikingTransformer, block: int, paths: dict[str, str], error_dir: str, tokens: int,
           hidden: int, steps: int) -> EmbeddingSource:
    """The block's Processes, connected; returns the source."""
    classifier = spiking.classifier
    layer, heads, levels = classifier.layers[block], classifier.heads, spiking.levels
    thresholds = spiking.calibration.thresholds
    flat, square = (tokens, hidden), (heads, tokens, tokens)
    common = {"error_dir": error_dir}

    def neuron(site: str, shape: tuple[int, ...]) -> MultiThresholdNeuron:
        base = _array(thresholds[f"{block}.{site}"].clamp(min=1e-8))     # (1, 1, width) or (1, heads, 1, 1)
        base = base.reshape(1, -1) if len(shape) == 2 else base.reshape(heads, 1, 1)
        return MultiThresholdNeuron(shape=shape, base=base, levels=levels, time_steps=steps, name=site, **common)

    def dense(module, name: str) -> TokenDense:
        return TokenDense(tokens=tokens, weights=_array(module.weight), bias=_array(module.bias), name=name,
                          **common)

    def norm(module, name: str) -> CompensatedFunction:
        return CompensatedFunction(kind="layernorm", shape=flat, time_steps=steps, weight=_array(module.weight),
                                   bias=_array(module.bias), eps=float(module.eps), name=name, **common)

    source = EmbeddingSource(inputs_path=paths["inputs"], mask_path=paths["mask"], shape=flat, time_steps=steps,
                             **common)
    attention, self_out = layer.attention.self, layer.attention.output
    x = neuron("input", flat)
    qkv = {name: (dense(getattr(attention, name), name), neuron(name, flat)) for name in ("query", "key", "value")}
    scores = SpikeProduct(kind="scores", tokens=tokens, hidden=hidden, heads=heads, time_steps=steps, **common)
    softmax = CompensatedFunction(kind="softmax", shape=square, time_steps=steps,
                                  scale=(hidden // heads) ** -0.5, name="softmax", **common)
    probs = neuron("softmax", square)
    context = SpikeProduct(kind="context", tokens=tokens, hidden=hidden, heads=heads, time_steps=steps, **common)
    context_spikes, attention_out = neuron("context", flat), dense(self_out.dense, "attention.output")
    norm1, x1 = norm(self_out.LayerNorm, "layernorm1"), neuron("layernorm1", flat)
    wide = (tokens, layer.intermediate.dense.out_features)
    fc1 = dense(layer.intermediate.dense, "fc1")
    gelu = CompensatedFunction(kind="gelu", shape=wide, time_steps=steps, name="gelu", **common)
    gelu_spikes = neuron("gelu", wide)
    fc2, norm2 = dense(layer.output.dense, "fc2"), norm(layer.output.LayerNorm, "layernorm2")
    sink = StepSink(shape=flat, record_path=paths["record"], time_steps=steps, **common)

    source.s_out.connect(x.a_in)
    for synapse, spikes in qkv.values():
        x.s_out.connect(synapse.s_in)
        synapse.a_out.connect(spikes.a_in)
    qkv["query"][1].s_out.connect(scores.a_in)
    qkv["key"][1].s_out.connect(scores.b_in)
    scores.a_out.connect(softmax.a_in)
    softmax.a_out.connect(probs.a_in)
    probs.s_out.connect(context.a_in)
    qkv["value"][1].s_out.connect(context.b_in)
    context.a_out.connect(context_spikes.a_in)
    context_spikes.s_out.connect(attention_out.s_in)
    attention_out.a_out.connect(norm1.a_in)
    x.s_out.connect(norm1.a_in)                 # residual: the InPort sums both
    norm1.a_out.connect(x1.a_in)
    x1.s_out.connect(fc1.s_in)
    fc1.a_out.connect(gelu.a_in)
    gelu.a_out.connect(gelu_spikes.a_in)
    gelu_spikes.s_out.connect(fc2.s_in)
    fc2.a_out.connect(norm2.a_in)
    x1.s_out.connect(norm2.a_in)                # residual
    norm2.a_out.connect(sink.a_in)
    for function in (softmax, norm1, gelu, norm2):
        source.mask_out.connect(function.mask_in)
    return source
