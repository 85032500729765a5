"""NIR export: every shipped model written and read back by NIR's own reader; the rate-coded reading run in sinabs.

The reading is approximate by design (docs/nir.md); what holds exactly is
tested exactly: a first hidden layer fed a constant input counts its codes in
T = L steps, so a one-hidden-layer network's logits are the integer
reference's. Deeper, the rates approach the network as T grows.
"""
from __future__ import annotations

import json

import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from factories import random_residual_network
from lava_deploy.cli import main
from lava_deploy.errors import DeployError
from lava_deploy.export import export_nir
from lava_deploy.export.nir_graph import rate_limit_logits, to_nir
from lava_deploy.network import (INPUT, AccumulateEmit, ConvSynapse, DenseSynapse, Edge, Layer, Readout,
                                 SpikingNetwork, validate_network)
from lava_deploy.network.netx import read_netx
from lava_deploy.network.reference import run_reference
from lava_deploy.simulate import simulation_inputs
from lava_deploy.simulate.nir_rate import V_INIT, class_names, read_nir, run_nir

MODELS = Path(__file__).resolve().parent.parent / "netx_models"
SHIPPED = sorted(p.name for p in MODELS.iterdir() if (p / "model.net").is_file())
#: Shipped Transformers: NIR has no signed neuron, product or function unit (their refusal: test_vit.py).
TRANSFORMERS = [name for name in SHIPPED if json.loads((MODELS / name / "figures.json").read_text())["model"] == "vit"]


def _into(graph: nir.NIRGraph, name: str) -> list[str]:
    return [a for a, b in graph.edges if b == name]


def _chain(graph: nir.NIRGraph, last: str) -> list[str]:
    """The synapse nodes from a source neuron (or the input) to ``last``, in order."""
    names = [last]
    while not isinstance(graph.nodes[_into(graph, names[0])[0]], (nir.IF, nir.Input)):
        names.insert(0, _into(graph, names[0])[0])
    return names


@pytest.mark.parametrize("model", [name for name in SHIPPED if name not in TRANSFORMERS])
def test_every_shipped_model_exports_and_nir_reads_it_back_with_the_same_weights(model, tmp_path):
    network = read_netx(MODELS / model / "model.net")
    path = tmp_path / "model.nir"
    export_nir(MODELS / model / "model.net", path)
    graph = nir.read(path)          # NIR's own reader, which type-checks every edge
    assert class_names(graph) == list(network.class_names)
    assert graph.metadata["input_levels"] == network.input_levels
    neurons = [name for name, node in graph.nodes.items() if isinstance(node, nir.IF)]
    assert len(neurons) == len(network.layers) - 1
    for i, layer in enumerate(network.layers):
        target = "output" if layer.is_readout else f"layer{i}_if"
        assert len(_into(graph, target)) == len(layer.inputs)         # a shortcut is one more edge into the node
        if not layer.is_readout:
            node = graph.nodes[target]
            theta = layer.levels << layer.neuron.scale_exp
            assert np.all(node.v_threshold == theta) and np.all(node.metadata[V_INIT] == theta / 2)
        for edge, last in zip(layer.inputs, _into(graph, target)):
            chain = [graph.nodes[name] for name in _chain(graph, last)]
            pool = next((int(n.kernel_size[0]) for n in chain if isinstance(n, nir.SumPool2d)), 1)
            weight = torch.from_numpy(chain[-1].weight.astype(np.float64))
            if isinstance(edge.synapse, DenseSynapse) and weight.shape[1] != edge.synapse.weight.shape[1]:
                weight = weight.reshape(len(weight), edge.synapse.input_shape[0], *(s // pool for s in
                                                                                   edge.synapse.input_shape[1:]))
            if pool > 1:        # the sum pool spread back over its blocks is the file's folded weight
                weight = weight.repeat_interleave(pool, dim=2).repeat_interleave(pool, dim=3)
            expected = edge.synapse.weight * network.source_levels(edge.source)
            assert np.array_equal(weight.reshape(expected.shape).numpy(), expected)
    kinds = {type(node).__name__ for node in graph.nodes.values()}
    if model == "mnist5k-resnet-t3":
        assert "SumPool2d" in kinds     # the global average pool before the readout


@pytest.mark.parametrize("model", TRANSFORMERS)
def test_a_shipped_transformer_has_no_nir_form_and_says_so_in_one_line(model, tmp_path):
    with pytest.raises(DeployError, match="has no NIR form"):
        export_nir(MODELS / model / "model.net", tmp_path / "model.nir")
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_exports_the_same_graph_as_its_netx_file(tmp_path):
    export_nir(MODELS / "digits-mlp-t3" / "model.pt", tmp_path / "from_checkpoint.nir")
    export_nir(MODELS / "digits-mlp-t3" / "model.net", tmp_path / "from_netx.nir")
    a, b = nir.read(tmp_path / "from_checkpoint.nir"), nir.read(tmp_path / "from_netx.nir")
    assert a.edges == b.edges and a.nodes.keys() == b.nodes.keys()
    for name in a.nodes:
        for key, value in a.nodes[name].to_dict().items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(value, b.nodes[name].to_dict()[key]), (name, key)


def _one_hidden_layer(rng: np.random.Generator, levels: int) -> SpikingNetwork:
    """Binary 8x8 input, a 3x3 conv after a folded 2x2 average pool (a 6x6 kernel, stride 2), and a readout
    after another folded 2x2 pool: both pools come back as SumPool2d nodes. Odd biases keep every potential
    off the multiples of S, so no float rounding can meet a threshold exactly."""
    scale_exp = 7
    kernel = 2 * rng.integers(-128, 128, size=(4, 1, 3, 3))
    conv = ConvSynapse(kernel.repeat(2, axis=2).repeat(2, axis=3), 0, (1, 8, 8), stride=(2, 2), padding=(2, 2))
    theta = 4 << scale_exp
    hidden = Layer([Edge(INPUT, conv)], AccumulateEmit(scale_exp, levels),
                   2 * rng.integers(-theta // 2, theta // 2, size=4) + 1)
    dense = 2 * rng.integers(-128, 128, size=(3, 4, 2, 2))
    readout = Layer([Edge(0, DenseSynapse(dense.repeat(2, axis=2).repeat(2, axis=3).reshape(3, -1), 0, (4, 4, 4)))],
                    Readout(scale_exp), rng.integers(-1000, 1000, size=3))
    network = SpikingNetwork([hidden, readout], 3, 1, (1, 8, 8), ["a", "b", "c"])
    validate_network(network)
    return network


@pytest.mark.parametrize("levels", [7, 5])
def test_one_hidden_layer_run_for_L_steps_gives_the_integer_logits_exactly(levels, tmp_path):
    rng = np.random.default_rng(levels)
    network = _one_hidden_layer(rng, levels)
    export_nir_path = tmp_path / "tiny.nir"
    graph = to_nir(network)
    assert sum(isinstance(node, nir.SumPool2d) for node in graph.nodes.values()) == 2
    nir.write(export_nir_path, graph)
    codes = rng.integers(0, 2, size=(300, 1, 8, 8))
    reference = run_reference(network, codes)
    assert 0 < np.mean(reference.codes[0] == 0) < 0.9 and np.mean(reference.codes[0] == levels) > 0.01
    exact = run_nir(export_nir_path, codes, levels)
    assert np.array_equal(exact.logits, reference.logits.astype(np.float64))
    assert exact.spikes_per_sample == pytest.approx(reference.codes[0].reshape(300, -1).sum(axis=1).mean())
    # sinabs's own reading of the same IF nodes (from 0, no half step) does not count the codes
    assert not np.array_equal(run_nir(graph, codes, levels, reading="sinabs").logits, exact.logits)


def test_the_shipped_mlp_approaches_the_quantized_network_as_T_grows():
    """The rates converge (as 1/T) to the network without the floor, whose predictions are the quantized
    network's on 99.4% of digits; the logits stay within half a code step per neuron of the integer ones."""
    network = read_netx(MODELS / "digits-mlp-t3" / "model.net")
    codes, _ = simulation_inputs(network, "digits")
    reference, limit = run_reference(network, codes), rate_limit_logits(network, codes)
    graph = to_nir(network)
    errors, agreement = [], []
    for steps in (4, 256):
        result = run_nir(graph, codes, steps)
        errors.append(np.abs(result.logits - limit).mean() / np.abs(limit).mean())
        agreement.append(np.mean(result.predictions == reference.predictions))
    assert errors[1] < errors[0] / 10 and errors[1] < 0.01, errors
    assert agreement[1] >= 0.99 and agreement[1] >= agreement[0], agreement


def test_a_residual_network_converges_with_every_shortcut_summed():
    """Were a shortcut dropped (as sinabs.from_nir's depth-first wiring does), the rates would converge elsewhere."""
    rng = np.random.default_rng(3)
    network = random_residual_network(rng)
    codes = rng.integers(0, network.input_levels + 1, size=(48, *network.input_shape))
    graph = to_nir(network)
    assert sum(len(_into(graph, name)) == 2 for name in graph.nodes) == 2
    limit = rate_limit_logits(network, codes)
    errors = [np.abs(run_nir(graph, codes, steps).logits - limit).mean() / np.abs(limit).mean() for steps in (16, 2048)]
    assert errors[1] < errors[0] / 4 and errors[1] < 0.1, errors


def test_cli_exports_nir_from_a_netx_file_and_refuses_in_one_line(tmp_path, capsys):
    out = tmp_path / "mlp.nir"
    assert main(["export", str(MODELS / "digits-mlp-t3" / "model.net"), "--format", "nir", "-o", str(out)]) == 0
    assert "rate-coded" in capsys.readouterr().out
    assert read_nir(out).metadata["bit_serial_time_steps"] == 3
    assert main(["export", str(MODELS / "digits-mlp-t3" / "model.net"), "--format", "onnx", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown format 'onnx'" in err[0]
    with pytest.raises(DeployError, match="cannot read NIR graph"):
        read_nir(MODELS / "digits-mlp-t3" / "README.md")


def test_a_conv_fed_by_a_dense_layer_is_refused_in_one_line():
    rng = np.random.default_rng(0)
    dense = DenseSynapse(2 * rng.integers(-128, 128, size=(4, 16)), 0, (1, 4, 4))
    conv = ConvSynapse(2 * rng.integers(-128, 128, size=(2, 4, 1, 1)), 0, (4, 1, 1))
    network = SpikingNetwork([Layer([Edge(INPUT, dense)], AccumulateEmit(8, 7), np.zeros(4, np.int64)),
                              Layer([Edge(0, conv)], Readout(8), np.zeros(2, np.int64))], 3, 1, (1, 4, 4), ["a", "b"])
    with pytest.raises(DeployError, match="conv fed by a dense layer has no NIR form"):
        to_nir(network)


def test_missing_nir_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nir", None)       # import nir now raises ImportError
    with pytest.raises(DeployError, match=r"needs nir: pip install 'lava-deploy\[nir\]'"):
        export_nir(MODELS / "digits-mlp-t3" / "model.net", tmp_path / "x.nir")
    assert not list(tmp_path.iterdir())


def test_running_the_graph_never_imports_samna():
    """PyPI's samna (a dependency of sinabs) installs SynSense's real one from the network when imported."""
    run_nir(to_nir(read_netx(MODELS / "digits-mlp-t3" / "model.net")), np.zeros((2, 1, 8, 8), np.int64), 2)
    assert "samna" not in sys.modules
