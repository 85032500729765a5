"""Folding and fixed point: the integer network computes what the QCFS network computes."""
import numpy as np
import pytest
import torch
from torch import nn

from lava_deploy.convert import convert_model
from lava_deploy.convert.fold import fold_model, run_folded
from lava_deploy.chip import STATE_BITS
from lava_deploy.errors import DeployError
from lava_deploy.network.reference import run_reference
from lava_deploy.qcfs.models import build_model, model_spec, qcfs_layers
from lava_deploy.qcfs.activation import QCFS


def _trained_like(name, shape, levels=7, seed=0, first=()):
    """A model with non-trivial BatchNorm statistics and thresholds, as training leaves them (``first``: spec
    layers before the family's)."""
    torch.manual_seed(seed)
    channels = first[0]["mean"] if first else range(shape[0])
    model = build_model([*first, *model_spec(name, (len(channels), *shape[1:]), 10)], shape, levels)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.5)
    for i, act in enumerate(qcfs_layers(model)):
        act.threshold.data.fill_(1.0 + 0.5 * i)
    return model.eval()


def _qcfs_codes(model, x):
    """Integer codes of every QCFS activation of the float model."""
    codes = []
    for module in model:
        if isinstance(module, QCFS):
            codes.append(module.codes(x).to(torch.int64).numpy())
        x = module(x)
    return codes, x


@pytest.mark.parametrize("name,shape", [("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)), ("cnn", (2, 12, 12))])
def test_folding_is_exact_before_rounding(name, shape):
    """floor(W~ k + b~) in float64 reproduces every QCFS code of the float network."""
    model = _trained_like(name, shape).double()
    codes = np.random.default_rng(1).integers(0, 256, size=(64, *shape))
    x = torch.from_numpy(codes / 255.0)
    with torch.no_grad():
        expected, logits = _qcfs_codes(model, x)
    k = torch.from_numpy(codes).double()
    folded = fold_model(model, shape, 8)
    for layer, want in zip(folded, expected + [None]):
        w = torch.from_numpy(layer.weight)
        if layer.kind == "dense":
            u = k.reshape(len(k), -1) @ w.T
        else:
            u = torch.nn.functional.conv2d(k, w, stride=layer.geometry["stride"], padding=layer.geometry["padding"])
        u = u.reshape(len(k), -1) + torch.from_numpy(layer.bias).repeat_interleave(int(np.prod(layer.output_shape[1:])))
        if want is None:   # readout: logits up to the positive scale of the last activation
            np.testing.assert_allclose(u.numpy(), logits.numpy(), rtol=1e-9, atol=1e-9)
            break
        k = torch.clamp(torch.floor(u), 0, layer.levels).reshape(len(k), *layer.output_shape)
        assert (k.to(torch.int64).numpy().reshape(want.shape) == want).mean() > 0.9999


def test_pooling_folds_into_the_next_layer():
    model = _trained_like("cnn", (1, 8, 8))
    folded = fold_model(model, (1, 8, 8), 8)
    conv_after_pool = folded[2]
    assert conv_after_pool.weight.shape[2:] == (6, 6) and conv_after_pool.geometry["stride"] == (2, 2)
    assert conv_after_pool.geometry["padding"] == (2, 2) and conv_after_pool.output_shape == (64, 4, 4)
    assert folded[-1].input_shape == (64, 4, 4) and folded[-1].levels == 0


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_fixed_point_is_on_loihi_grid_and_close_to_float(name):
    model = _trained_like(name, (1, 8, 8))
    net = convert_model(model, (1, 8, 8), 8, [str(i) for i in range(10)])
    assert net.time_steps == 3
    for layer in net.layers:
        m = layer.synapse.weight_mantissa
        assert m.min() >= -256 and m.max() <= 254 and (m % 2 == 0).all()
        assert layer.synapse.weight_exp >= 0 and layer.neuron.scale_exp >= net.time_steps - 1
    assert all(spare >= 0 for spare in net.headroom())
    codes = np.random.default_rng(2).integers(0, 256, size=(300, 1, 8, 8))
    with torch.no_grad():
        expected, logits = _qcfs_codes(model, torch.from_numpy(codes / 255.0).float())
    ref = run_reference(net, codes)
    # Quantization loss is small but real: most codes agree, nearly all predictions do.
    for got, want in zip(ref.codes, expected):
        assert (got.reshape(want.shape) == want).mean() > 0.95
    assert (ref.predictions == logits.argmax(1).numpy()).mean() > 0.95


def test_headroom_is_reported_and_overflow_refused():
    model = _trained_like("mlp", (1, 8, 8))
    net = convert_model(model, (1, 8, 8), 8, [str(i) for i in range(10)])
    layer = net.layers[1]
    spare = net.headroom_bits(1)
    low, high = net.potential_bounds(1)
    assert max(abs(low), high) < 2 ** (STATE_BITS - 1 - spare)
    from lava_deploy.network import validate_network
    validate_network(net)
    layer.bias = layer.bias + (1 << (STATE_BITS - 1)) - high     # the largest potential now needs one bit too many
    assert net.headroom_bits(1) == -1
    with pytest.raises(DeployError, match="layer 1: membrane potential can reach .* overflows .* by 1 bit"):
        validate_network(net)


@pytest.mark.parametrize("middle,features,message", [
    ([nn.ReLU()], 256, "ReLU"),                       # not quantized: no exact spike code
    ([QCFS(7), nn.MaxPool2d(2)], 64, "MaxPool2d"),   # not linear: cannot fold into the next layer
])
def test_modules_without_exact_spiking_form_are_refused(middle, features, message):
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), *middle, nn.Flatten(),
                          nn.Linear(features, 16), QCFS(7), nn.Linear(16, 10))
    with pytest.raises(DeployError, match=message):
        convert_model(model, (1, 8, 8), 8, [str(i) for i in range(10)])


@pytest.mark.parametrize("name,shape", [("mlp", (3, 6, 6)), ("cnn", (3, 8, 8)), ("cnn", (1, 8, 8))])
def test_an_input_normalization_folds_exactly_before_rounding(name, shape):
    """(x - m) / s before the first layer (a grayscale image repeated over 3 channels in the last case): the
    folded network computes every code and the logits of the float network, the zero padding included."""
    normalize = {"type": "normalize", "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}
    model = _trained_like(name, shape, first=(normalize,)).double()
    codes = np.random.default_rng(5).integers(0, 256, size=(64, *shape))
    with torch.no_grad():
        expected, logits = _hooked_codes(model, torch.from_numpy(codes / 255.0))
    folded = fold_model(model, shape, 8)
    assert folded[0].bias.shape == (folded[0].output_shape if name == "cnn" else (folded[0].output_shape[0],))
    folded_logits, ours = run_folded(folded, codes)
    np.testing.assert_allclose(folded_logits, logits.numpy(), rtol=1e-9, atol=1e-9)
    for mine, want in zip(ours, expected):
        assert (mine.reshape(want.shape) == want).mean() > 0.9999


def test_a_model_without_qcfs_is_refused():
    with pytest.raises(DeployError, match="no QCFS"):
        convert_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), (1, 8, 8), 8, list("0123456789"))


def _hooked_codes(model, x):
    """Every QCFS activation's integer codes, residual blocks included (forward hooks, execution order)."""
    codes, handles = [], []
    for act in qcfs_layers(model):
        handles.append(act.register_forward_hook(lambda m, i, o: codes.append(m.codes(i[0]).to(torch.int64).numpy())))
    with torch.no_grad():
        logits = model(x)
    for handle in handles:
        handle.remove()
    return codes, logits


def test_residual_blocks_fold_exactly_before_rounding():
    """Both branches land in the second activation's code domain: every code of the float ResNet, reproduced."""
    shape = (1, 8, 8)
    model = _trained_like("resnet", shape).double()
    codes = np.random.default_rng(2).integers(0, 256, size=(64, *shape))
    expected, logits = _hooked_codes(model, torch.from_numpy(codes / 255.0))
    folded = fold_model(model, shape, 8)
    assert [layer.skip.source for layer in folded if layer.skip is not None] == [0, 2, 4]
    assert (folded[2].skip.tensor, folded[4].skip.tensor) == ("shortcut_gain", "weight")   # identity, projection
    outputs, k = [], torch.from_numpy(codes).double()
    for layer, want in zip(folded, expected + [None]):
        u = torch.nn.functional.conv2d(k, torch.from_numpy(layer.weight), stride=layer.geometry["stride"],
                                       padding=layer.geometry["padding"]) \
            if layer.kind == "conv" else (k.reshape(len(k), -1) @ torch.from_numpy(layer.weight).T).view(len(k), -1, 1, 1)
        if layer.skip is not None:
            u = u + torch.nn.functional.conv2d(outputs[layer.skip.source], torch.from_numpy(layer.skip.weight),
                                               stride=layer.skip.stride)
        u = u + torch.from_numpy(layer.bias).view(1, -1, 1, 1)
        if want is None:
            np.testing.assert_allclose(u.reshape(len(k), -1).numpy(), logits.numpy(), rtol=1e-9, atol=1e-9)
            break
        k = torch.clamp(torch.floor(u), 0, layer.levels)
        outputs.append(k)
        assert (k.to(torch.int64).numpy().reshape(want.shape) == want).mean() > 0.9999


def test_residual_network_converts_within_fixed_point_and_matches_spikes():
    shape = (1, 8, 8)
    network = convert_model(_trained_like("resnet", shape), shape, 8, [str(i) for i in range(10)])
    assert all(spare >= 0 for spare in network.headroom())
    assert [network.edge_delay(i, edge) for i, layer in enumerate(network.layers) for edge in layer.inputs[1:]] \
        == [4, 4, 4]
    codes = np.random.default_rng(3).integers(0, 256, size=(16, *shape))
    by_codes, by_spikes = run_reference(network, codes), run_reference(network, codes, spikes=True)
    np.testing.assert_array_equal(by_codes.logits, by_spikes.logits)


def test_a_residual_block_needs_a_stem():
    from lava_deploy.qcfs.models import ResidualBlock

    model = nn.Sequential(ResidualBlock(1, 4, 1, 7), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).eval()
    with pytest.raises(DeployError, match="residual block must follow a layer with a QCFS activation"):
        fold_model(model, (1, 8, 8), 8)
