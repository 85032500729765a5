"""The QCFS Vision Transformer: its quantized float twin computes exactly its integer spiking network, which
converts, round-trips through netx format 2 and runs spike for spike in the reference; the CLI trains and
exports one."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from lava_deploy.cli import main
from lava_deploy.convert import convert_model
from lava_deploy.convert.vit import attach_rounding, convert_vit
from lava_deploy.network import validate_network
from lava_deploy.network.netx import read_netx, write_netx
from lava_deploy.network.reference import run_reference
from lava_deploy.qcfs.models import build_model, model_spec
from lava_deploy.qcfs.vit import VisionTransformer


def _tiny_vit(seed: int, levels: int, input_bits: int = 8) -> VisionTransformer:
    torch.manual_seed(seed)
    model = VisionTransformer((1, 8, 8), 3, levels, patch=2, dim=8, depth=1, heads=2, mlp_dim=16,
                              input_bits=input_bits)
    with torch.no_grad():       # spread the thresholds, so that codes saturate somewhere and not everywhere
        for name, parameter in model.named_parameters():
            if name.endswith("threshold"):
                parameter.mul_(torch.empty(()).uniform_(0.3, 1.5))
    return model.eval()


def _images(rng: np.random.Generator, n: int, input_bits: int = 8) -> tuple[torch.Tensor, np.ndarray]:
    top = (1 << input_bits) - 1
    codes = rng.integers(0, top + 1, size=(n, 1, 8, 8))
    return torch.from_numpy(codes / top).float(), codes


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), time_steps=st.sampled_from([2, 3, 4]))
def test_the_rounded_float_twin_computes_exactly_the_integer_network(seed, time_steps):
    """Every logit of the twin (float32, fixed-point values of every stage) is the reference's over S."""
    model = _tiny_vit(seed, (1 << time_steps) - 1)
    network = convert_vit(model, time_steps, ["a", "b", "c"])
    attach_rounding(model, time_steps)
    x, codes = _images(np.random.default_rng(seed), 16)
    with torch.no_grad():
        twin = model(x).double().numpy()
    reference = run_reference(network, codes)
    scale = 2.0 ** network.layers[-1].neuron.scale_exp
    np.testing.assert_array_equal(twin * scale, reference.logits)
    spiking = run_reference(network, codes, spikes=True)
    np.testing.assert_array_equal(spiking.logits, reference.logits)
    for by_spike, by_code in zip(spiking.codes, reference.codes):
        np.testing.assert_array_equal(by_spike, by_code)


def test_a_dead_mlp_keeps_its_shortcut_inside_the_chips_weight_exponents():
    """An MLP whose weights decayed to almost nothing (a trained ViT's last block did) would make the finest
    weight step's S so large that the residual's gain needs a weight exponent above 7: the step coarsens instead,
    and the twin still computes the integer network exactly."""
    model = _tiny_vit(3, 15)
    with torch.no_grad():
        model.blocks[0].fc2.weight.mul_(1e-5)
    network = convert_vit(model, 4, ["a", "b", "c"])
    validate_network(network)       # raises on an exponent outside the chip's range
    attach_rounding(model, 4)
    x, codes = _images(np.random.default_rng(3), 16)
    with torch.no_grad():
        twin = model(x).double().numpy()
    np.testing.assert_array_equal(twin * 2.0 ** network.layers[-1].neuron.scale_exp,
                                  run_reference(network, codes).logits)


def test_a_converted_vit_round_trips_through_format_2(tmp_path):
    model = _tiny_vit(1, 15)
    network = convert_vit(model, 4, ["a", "b", "c"])
    kinds = [layer.neuron.kind for layer in network.layers]
    assert kinds[:3] == ["signed-emit", "layernorm", "signed-emit"] and "softmax" in kinds and "lookup" in kinds
    assert kinds[-1] == "readout" and network.layers[0].bias.shape == (8, 4, 4)     # the position embedding
    write_netx(network, tmp_path / "vit.net")
    back = read_netx(tmp_path / "vit.net")
    codes = _images(np.random.default_rng(0), 8)[1]
    np.testing.assert_array_equal(run_reference(back, codes).logits, run_reference(network, codes).logits)
    assert back.latency_steps == network.latency_steps == (1 + 8 + 2) * 5


def test_the_vit_family_builds_from_its_spec_and_converts_through_convert_model():
    spec = model_spec("vit", (1, 28, 28), 10, 8)
    assert spec == [{"type": "vit", "patch": 7, "dim": 64, "depth": 2, "heads": 4, "mlp": 128, "input_bits": 8,
                     "classes": 10}]
    model = build_model(spec, (1, 28, 28), 15).eval()
    network = convert_model(model, (1, 28, 28), 8, [str(c) for c in range(10)])
    assert network.time_steps == 4 and len(network.layers) == 1 + 2 * 10 + 2
    with pytest.raises(Exception, match="built for 8-bit"):
        convert_model(model, (1, 28, 28), 6, [str(c) for c in range(10)])


def test_cli_trains_exports_and_runs_a_vit(tmp_path, capsys):
    """On a small dataset: the integer reference's accuracy is the quantized twin's, as recorded in the file."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    x = rng.random((120, 8, 8)) * 0.3
    for c in range(3):      # each class lights one band of the image
        x[labels == c, :, 2 * c:2 * c + 3] += 0.6
    np.savez(tmp_path / "bands.npz", x=np.clip(x, 0, 1).astype(np.float32), y=labels)
    data, checkpoint, net = f"npz:{tmp_path / 'bands.npz'}", tmp_path / "vit.pt", tmp_path / "vit.net"
    assert main(["train", "--model", "vit", "--dataset", data, "--time-steps", "3", "--epochs", "2",
                 "--qat-epochs", "1", "-o", str(checkpoint), "-q"]) == 0
    assert main(["export", str(checkpoint), "-o", str(net), "--force"]) == 0
    capsys.readouterr()
    with __import__("h5py").File(net, "r") as f:
        meta = json.loads(f["lava_deploy"].attrs["metadata"])
        assert f["lava_deploy"].attrs["formatVersion"] == 2
    assert meta["reference_test_accuracy"] == meta["float_test_accuracy"]
    assert main(["info", str(net)]) == 0
    out = capsys.readouterr().out
    assert "-> softmax" in out and "-> layernorm" in out and "x layer" in out
    assert main(["export", str(checkpoint), "-o", str(tmp_path / "graded.net"), "--encoding", "graded"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bit-serially only, not graded" in err, err
    assert not (tmp_path / "graded.net").exists()


def test_nir_export_refuses_a_transformer_in_one_line():
    from lava_deploy.errors import DeployError
    from lava_deploy.export.nir_graph import to_nir

    network = convert_vit(_tiny_vit(2, 7), 3, ["a", "b", "c"])
    with pytest.raises(DeployError, match="signed-emit node has no NIR form"):
        to_nir(network)
