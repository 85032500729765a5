"""Lava's fixed-point processes of the Transformer's nodes against the integer reference, spike for spike."""
from __future__ import annotations

import numpy as np
import pytest

from factories import random_codes, random_transformer_network
from lava_deploy.network.reference import run_reference
from lava_deploy.simulate.lava_cpu.runner import run_lava

pytestmark = pytest.mark.lava


@pytest.mark.parametrize("seed, time_steps, input_bits, heads", [
    (0, 1, 1, 1),       # one step per sample: every register turns over each step
    (1, 3, 8, 2),       # graded input digits into a signed embedding
    (2, 4, 4, 2),
])
def test_lava_runs_an_attention_block_spike_for_spike(seed, time_steps, input_bits, heads):
    rng = np.random.default_rng(seed)
    network = random_transformer_network(rng, time_steps, input_bits, channels=2 * heads, heads=heads)
    codes = random_codes(rng, network, 6)
    labels = rng.integers(0, 3, len(codes))
    ref = run_reference(network, codes, spikes=True)
    lava = run_lava(network, codes, labels)
    np.testing.assert_array_equal(lava.logits, ref.logits)
    np.testing.assert_array_equal(lava.labels, labels)
    for layer, (ours, theirs) in enumerate(zip(lava.spikes, ref.spikes)):
        assert ours.dtype == theirs.dtype, layer
        np.testing.assert_array_equal(ours, theirs, err_msg=f"layer {layer} ({network.layers[layer].neuron.kind})")
    negative = sum(int((s < 0).sum()) for s in ref.spikes)
    assert negative > 0 and sum(int((s > 0).sum()) for s in ref.spikes) > 0
