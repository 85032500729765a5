"""The spike-level reference equals the bits of the code-level reference, for every layer, sample and step."""
import numpy as np
from hypothesis import given, settings, strategies as st

from factories import random_codes, random_network
from lava_deploy.network import encode_input_digits
from lava_deploy.network.reference import run_reference


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), time_steps=st.integers(1, 8), input_bits=st.integers(1, 8),
       conv=st.booleans(), clamp=st.booleans())
def test_spikes_are_the_bits_of_every_code(seed, time_steps, input_bits, conv, clamp):
    rng = np.random.default_rng(seed)
    levels = None
    if clamp:  # QCFS checkpoints with L < 2**T - 1 levels
        levels = int(rng.integers(1, 1 << time_steps))
    net = random_network(rng, time_steps=time_steps, input_bits=input_bits, conv=conv, levels=levels)
    codes = random_codes(rng, net, 7)
    by_code = run_reference(net, codes)
    by_spike = run_reference(net, codes, spikes=True)
    np.testing.assert_array_equal(by_spike.logits, by_code.logits)
    T = time_steps
    for k, spikes in zip(by_code.codes, by_spike.spikes):
        assert spikes.shape == (len(codes), T, *k.shape[1:])
        bits = np.stack([(k >> (T - 1 - j)) & 1 for j in range(T)], axis=1)
        np.testing.assert_array_equal(spikes.astype(np.int64), bits)
        assert k.max() <= net.layers[0].levels


def test_saturated_and_negative_potentials_occur():
    """The random networks above really reach both ends of the code range."""
    rng = np.random.default_rng(0)
    net = random_network(rng, time_steps=3)
    codes = run_reference(net, random_codes(rng, net, 50)).codes
    assert all((c == 0).any() and (c == 7).any() for c in codes)


def test_input_digit_planes_rebuild_the_codes():
    codes = np.arange(256)
    for T in range(1, 9):
        planes = encode_input_digits(codes, 8, T)
        m = -(-8 // T)
        rebuilt = sum(planes[j] << (m * (T - 1 - j)) for j in range(T))
        np.testing.assert_array_equal(rebuilt, codes)
        assert planes.max() < (1 << m)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), conv=st.booleans(), stride=st.sampled_from([1, 2]))
def test_float32_synapses_are_exact_at_the_edge_of_the_24_bit_state(seed, conv, stride):
    """With 24-bit headroom every product and partial sum is an integer below 2**24: float32 equals float64."""
    import torch

    from lava_deploy.chip import STATE_BITS
    from lava_deploy.network import INPUT, ConvSynapse, DenseSynapse, Edge, Layer, Readout, SpikingNetwork

    rng = np.random.default_rng(seed)
    levels, channels = 7, 16
    shape = (channels, 6, 6)
    weight_shape = (8, channels, 3, 3) if conv else (8, channels * 36)
    mantissa = 2 * rng.integers(-128, 128, size=weight_shape)
    synapse = ConvSynapse(mantissa, 0, shape, stride=(stride, stride), padding=(1, 1)) if conv else \
        DenseSynapse(mantissa, 0, shape)
    layer = Layer([Edge(INPUT, synapse)], Readout(3), np.zeros(8, np.int64))
    net = SpikingNetwork([layer], 3, 3, shape, [str(c) for c in range(8)])       # input codes 0..7
    # The largest exponent that keeps headroom: the potentials then reach up to half the 24-bit range.
    while net.headroom_bits(0) > 0:
        synapse.weight_exp += 1
    assert net.headroom_bits(0) == 0 and net.potential_bounds(0)[1] >= 1 << (STATE_BITS - 3)
    x = torch.from_numpy(rng.integers(0, levels + 1, size=(4, *shape))).double()
    assert torch.equal(synapse.current(x, single=True), synapse.current(x, single=False))
