"""import-qcfs: the QCFS authors' checkpoints (IF and MyFloor layouts) as lava-deploy checkpoints.

Checkpoints are built in the reference code's key layout with random weights
(tests/qcfs_reference.py, written from its model definitions), narrowed and
on small images so that the suite stays fast, and the imported network is
compared with the reference network computed in its own form.
"""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from lava_deploy.cli import main
from lava_deploy.convert import convert_model
from lava_deploy.convert.fold import fold_model, run_folded
from lava_deploy.errors import DeployError
from lava_deploy.network.netx import read_netx
from lava_deploy.network.reference import run_reference
from lava_deploy.train.checkpoint import load_checkpoint
from lava_deploy.train.import_qcfs import import_qcfs
from qcfs_reference import CIFAR10_MEAN, CIFAR10_STD, Reference, normalize, smooth_images

#: (architecture, activation flavour, L, width divisor, image side): every architecture, both layouts,
#: L + 1 a power of two and not.
CASES = [("vgg16", "IF", 8, 16, 32), ("resnet18", "MyFloor", 16, 16, 8), ("resnet20", "IF", 3, 4, 8),
         ("resnet34", "MyFloor", 5, 16, 8)]
#: Inputs per architecture here; benchmarks/import_qcfs.py measures 500 and more, at the authors' widths.
SAMPLES = 200


class Imported:
    """A reference network, its checkpoint file, a dataset of its image shape and the imported checkpoint."""

    def __init__(self, folder, arch, flavour, levels, narrow, side):
        self.shape = (3, side, side)
        self.reference = Reference(arch, flavour, levels, narrow=narrow)
        self.reference.forward(normalize(smooth_images(64, self.shape, seed=1), CIFAR10_MEAN, CIFAR10_STD),
                               calibrate=True)
        self.path = folder / f"{arch}.pth"
        torch.save(self.reference.state, self.path)
        self.codes = smooth_images(SAMPLES, self.shape, seed=2)
        self.dataset = f"npz:{folder / 'images.npz'}"
        labels = np.arange(SAMPLES) % 10
        np.savez(folder / "images.npz", x=self.codes.numpy().astype(np.uint8), y=labels)
        self.output = folder / f"{arch}.pt"
        self.info = import_qcfs(self.path, arch, self.dataset, levels, self.output, mean=CIFAR10_MEAN,
                                std=CIFAR10_STD)


@pytest.fixture(scope="module", params=CASES, ids=[case[0] for case in CASES])
def imported(request, tmp_path_factory):
    return Imported(tmp_path_factory.mktemp(request.param[0]), *request.param)


def _reference_codes(reference: Reference, codes: torch.Tensor) -> tuple[list[np.ndarray], np.ndarray]:
    """Every activation's codes and the logits of the reference network, in float64."""
    exact = reference.double()
    exact.codes = []
    logits = exact.forward(normalize(codes, CIFAR10_MEAN, CIFAR10_STD, dtype=torch.float64))
    return [c.numpy() for c in exact.codes], logits.numpy()


def test_every_code_of_the_reference_network_is_reproduced_before_rounding(imported):
    """Folded but unrounded, the imported network computes every code of every activation the reference does."""
    model, info = load_checkpoint(imported.output)
    assert info.time_steps == math.ceil(math.log2(info.levels + 1))
    expected, logits = _reference_codes(imported.reference, imported.codes)
    folded_logits, codes = run_folded(fold_model(model, imported.shape, 8), imported.codes.numpy())
    assert len(codes) == len(expected)
    for i, (ours, theirs) in enumerate(zip(codes, expected)):
        np.testing.assert_array_equal(ours.reshape(theirs.shape), theirs, err_msg=f"activation {i}")
        assert theirs.max() == info.levels         # the codes use the whole range, up to the clamp at L
    np.testing.assert_array_equal(folded_logits.argmax(1), logits.argmax(1))
    assert len(np.unique(logits.argmax(1))) >= 5    # most classes predicted: agreement is not trivial


def test_the_integer_network_differs_from_the_reference_by_its_8_bit_weights_alone(imported):
    """The integer network is the folded one with weights and biases on Loihi's 8-bit grid: its codes are
    ``floor((W~ + dW) k + b~ + db)`` with the rounding's dW and db, and nothing else changes.

    Every disagreement with the reference network is therefore the rounding's. How many there are is
    measured, not asserted: random deep networks amplify a code that rounding moves by one into many
    deeper ones (benchmarks/results/import_qcfs.md measures it, and on trained networks).
    """
    model, info = load_checkpoint(imported.output)
    network = convert_model(model, info.input_shape, info.input_bits, info.class_names)
    assert network.time_steps == math.ceil(math.log2(info.levels + 1))
    assert all(layer.levels == info.levels for layer in network.layers[:-1])
    result = run_reference(network, imported.codes.numpy())
    assert all(codes.max() <= info.levels for codes in result.codes)
    # The rounded network, computed as the folded one is: identical to the integer reference.
    dequantized = fold_model(model, imported.shape, 8)
    for folded, layer in zip(dequantized, network.layers):
        scale = float(1 << layer.neuron.scale_exp)
        folded.weight = layer.synapse.weight.astype(np.float64) / scale
        folded.bias = layer.bias.astype(np.float64) / scale
        if folded.skip is not None:
            folded.skip.weight = layer.inputs[1].synapse.weight.astype(np.float64) / scale
    logits, codes = run_folded(dequantized, imported.codes.numpy())
    np.testing.assert_array_equal(logits * (1 << network.layers[-1].neuron.scale_exp), result.logits)
    for ours, rounded in zip(result.codes, codes):
        np.testing.assert_array_equal(ours, rounded.reshape(ours.shape))
    # How far the weights moved: at most half a step of each layer's grid.
    for folded, exact in zip(dequantized, fold_model(model, imported.shape, 8)):
        step = 2.0 ** -math.floor(math.log2(127.49 / np.abs(exact.weight).max()))
        assert np.abs(folded.weight - exact.weight).max() <= step / 2 + 1e-12
    their = imported.reference.forward(normalize(imported.codes, CIFAR10_MEAN, CIFAR10_STD)).argmax(1).numpy()
    print(f"{info.model}: integer vs reference-form predictions {(result.predictions == their).mean():.3f}")


def test_a_normalized_input_meets_the_zero_padding_in_a_per_neuron_bias(imported):
    """The reference pads the normalized image with zeros; folded into raw pixels that is a bias per neuron
    on the border of the first conv, and the file keeps it."""
    model, info = load_checkpoint(imported.output)
    network = convert_model(model, info.input_shape, info.input_bits, info.class_names)
    bias = network.layers[0].bias
    assert bias.shape == network.layers[0].output_shape
    assert (bias[:, 1:-1, 1:-1] == bias[:, 1:2, 1:2]).all() and (bias[:, 0, :] != bias[:, 1:2, 1]).any()


# ---- files and flags ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A narrow resnet20 (IF, L = 8) on 8x8 images: its state dict, file and dataset."""
    return Imported(tmp_path_factory.mktemp("small"), "resnet20", "IF", 8, 4, 8)


def _import(small, tmp_path, state=None, **kwargs):
    """import_qcfs on ``state`` (default: the small network's own) saved to a new file."""
    path = tmp_path / "ckpt.pth"
    torch.save(small.reference.state if state is None else state, path)
    args = dict(arch="resnet20", dataset=small.dataset, levels=8, output=tmp_path / "out.pt", mean=CIFAR10_MEAN,
                std=CIFAR10_STD)
    return import_qcfs(path, **{**args, **kwargs})


def _edited(state, edit):
    state = dict(state)
    edit(state)
    return state


HOSTILE = {
    "missing key": (lambda s: s.pop("fc.bias"), "not a resnet20 state dict of the QCFS reference code: it has no "
                                                "'fc.bias'"),
    "extra key": (lambda s: s.__setitem__("fc.extra", torch.zeros(1)), "it holds 'fc.extra', which the "
                                                                        "architecture has not"),
    "wrong shape": (lambda s: s.__setitem__("fc.weight", torch.zeros(10, 7)),
                    "'fc.weight' has shape (10, 7), expected (10, 16)"),
    "wrong rank": (lambda s: s.__setitem__("conv1.0.weight", torch.zeros(4, 27)), "'conv1.0.weight' has shape "
                                                                                  "(4, 27), not 4-dimensional"),
    "integer weights": (lambda s: s.__setitem__("conv1.1.weight", torch.ones(4, dtype=torch.int64)),
                        "'conv1.1.weight' is torch.int64, expected floating point"),
    "NaN": (lambda s: s.__setitem__("conv2_x.0.residual_function.0.weight",
                                    s["conv2_x.0.residual_function.0.weight"] * float("nan")), "NaN or infinite"),
    "negative threshold": (lambda s: s.__setitem__("conv1.2.thresh", torch.tensor([-1.0])),
                           "threshold 'conv1.2.thresh' is -1; a QCFS threshold must be positive"),
    "two thresholds": (lambda s: s.__setitem__("conv1.2.thresh", torch.ones(2)),
                       "'conv1.2.thresh' has shape (2,), expected one number"),
    "negative variance": (lambda s: s.__setitem__("conv1.1.running_var", -torch.ones(4)), "negative variances"),
    "both layouts": (lambda s: s.__setitem__("conv1.2.up", s.pop("conv1.2.thresh")),
                     "holds both IF ('thresh') and MyFloor ('up') thresholds"),
    "no thresholds": (lambda s: [s.pop(k) for k in list(s) if k.endswith("thresh")], "no QCFS threshold"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_a_state_dict_that_is_not_the_architectures_is_one_line_and_no_file(small, tmp_path, case):
    edit, message = HOSTILE[case]
    with pytest.raises(DeployError) as error:
        _import(small, tmp_path, _edited(small.reference.state, edit))
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "out.pt").exists()


def test_files_that_are_no_state_dict_are_refused_without_unpickling(small, tmp_path):
    class Payload:         # any object but plain data: weights_only refuses to build it
        def __reduce__(self):
            return (print, ("unpickled",))
    for payload, message in ((list(small.reference.state.values()), "is not a state dict"),
                             ({"model": small.reference.state}, "is not a state dict"),
                             ({**small.reference.state, "x": Payload()}, "holds objects other than plain data")):
        path = tmp_path / "bad.pth"
        torch.save(payload, path)
        with pytest.raises(DeployError, match=message):
            import_qcfs(path, "resnet20", small.dataset, 8, tmp_path / "out.pt")
    torch.save(small.reference.state, tmp_path / "whole.pth")
    (tmp_path / "bad.pth").write_bytes((tmp_path / "whole.pth").read_bytes()[:2000])    # cut short
    with pytest.raises(DeployError, match="cannot read checkpoint"):
        import_qcfs(tmp_path / "bad.pth", "resnet20", small.dataset, 8, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_a_distributed_data_parallel_prefix_is_removed(small, tmp_path):
    _import(small, tmp_path, {f"module.{k}": v for k, v in small.reference.state.items()})
    ours, theirs = load_checkpoint(tmp_path / "out.pt")[0], load_checkpoint(small.output)[0]
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert torch.equal(a, b), name


def test_wrong_architecture_names_the_right_one_and_max_pools_are_refused(small, tmp_path):
    with pytest.raises(DeployError, match=r"its keys are resnet20's: --arch resnet20\)$"):
        _import(small, tmp_path, arch="resnet18")
    with pytest.raises(DeployError, match=r"^vgg16_wobn: layer1\.6 is a MaxPool2d"):
        _import(small, tmp_path, arch="vgg16_wobn")
    wobn = Reference("vgg16_wobn", "IF", 8, narrow=64)
    wobn.forward(normalize(smooth_images(8, (3, 32, 32), seed=3), CIFAR10_MEAN, CIFAR10_STD), calibrate=True)
    with pytest.raises(DeployError, match=r"its keys are vgg16_wobn's: --arch vgg16_wobn\)$"):
        _import(small, tmp_path, wobn.state, arch="vgg16", dataset="cifar10", mean=None, std=None)


def test_flags_out_of_range_are_one_line(small, tmp_path):
    for levels in (0, 256, True):
        with pytest.raises(DeployError, match="level count must be a whole number in 1..255"):
            _import(small, tmp_path, levels=levels)
    with pytest.raises(DeployError, match="--mean has 2 values for a first layer of 3 input channels"):
        _import(small, tmp_path, mean=(0.1, 0.2))
    with pytest.raises(DeployError, match="give both --mean and --std"):
        _import(small, tmp_path, std=None)
    with pytest.raises(DeployError, match="--std positive"):
        _import(small, tmp_path, std=(0.0,))
    np.savez(tmp_path / "three.npz", x=np.zeros((10, 8, 8, 3), np.uint8), y=np.arange(10) % 3)
    with pytest.raises(DeployError, match="'fc' has 10 outputs, but dataset .* has 3 classes"):
        _import(small, tmp_path, dataset=f"npz:{tmp_path / 'three.npz'}")
    vgg = Reference("vgg16", "IF", 8, narrow=64)
    vgg.forward(normalize(smooth_images(8, (3, 32, 32), seed=3), CIFAR10_MEAN, CIFAR10_STD), calibrate=True)
    with pytest.raises(DeployError, match=r"vgg16 cannot take images of \(1, 28, 28\): average pool of 2 needs"):
        _import(small, tmp_path, vgg.state, arch="vgg16", dataset="mnist", mean=None, std=None)
    assert not (tmp_path / "out.pt").exists()


def test_a_grayscale_dataset_feeds_a_three_channel_network_as_grayscale_repeats_it(small, tmp_path):
    """The reference networks take 3 channels: a 1-channel dataset is repeated over them (weights summed)."""
    gray = smooth_images(100, (1, 8, 8), seed=4)
    np.savez(tmp_path / "gray.npz", x=gray.numpy()[:, 0].astype(np.uint8), y=np.arange(100) % 10)
    mean, std = (0.1307,), (0.3081,)
    _import(small, tmp_path, dataset=f"npz:{tmp_path / 'gray.npz'}", mean=mean, std=std)
    model, info = load_checkpoint(tmp_path / "out.pt")
    assert info.input_shape == (1, 8, 8) and info.spec[0] == {"type": "normalize", "mean": [0.1307] * 3,
                                                              "std": [0.3081] * 3}
    exact = small.reference.double()
    logits = exact.forward(normalize(gray, mean * 3, std * 3, dtype=torch.float64))
    folded_logits, _ = run_folded(fold_model(model, info.input_shape, 8), gray.numpy())
    np.testing.assert_array_equal(folded_logits.argmax(1), logits.argmax(1).numpy())
    np.testing.assert_allclose(folded_logits, logits.numpy() * folded_logits[0, 0] / float(logits[0, 0]),
                               rtol=1e-9)


def test_cli_imports_exports_and_describes(small, tmp_path, capsys):
    ckpt, out, net = tmp_path / "ref.pth", tmp_path / "m.pt", tmp_path / "m.net"
    torch.save(small.reference.state, ckpt)
    assert main(["import-qcfs", str(ckpt), "--arch", "resnet20", "--dataset", "cifar10", "-L", "8",
                 "-o", str(out)]) == 0
    line = capsys.readouterr().out
    assert "resnet20 (IF thresholds), L = 8 -> T = 4, input 3x32x32 normalized (mean 0.4914,0.4822,0.4465" in line
    assert main(["export", str(out), "-o", str(net)]) == 2       # plain cifar10 names no data here
    assert "unknown dataset 'cifar10'" in capsys.readouterr().err and not net.exists()
    assert main(["import-qcfs", str(ckpt), "--arch", "resnet20", "--dataset", small.dataset, "-L", "8",
                 "--mean", "0.4914,0.4822,0.4465", "--std", "0.2023,0.1994,0.2010", "-o", str(out)]) == 0
    assert main(["export", str(out), "-o", str(net), "--force"]) == 0
    capsys.readouterr()
    network = read_netx(net)
    assert network.metadata["dataset"] == small.dataset and network.time_steps == 4
    assert network.layers[0].bias.shape == network.layers[0].output_shape
    assert 0 <= network.metadata["float_test_accuracy"] <= 1
    assert main(["import-qcfs", str(ckpt), "--arch", "resnet20", "--dataset", "cifar10", "-L", "8",
                 "--mean", "a,b", "--std", "1", "-o", str(out)]) == 2
    assert "is not a comma-separated list of numbers" in capsys.readouterr().err
