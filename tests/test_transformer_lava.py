"""One converted BERT block (expectation compensation, 8-threshold neurons) as Lava Processes matches PyTorch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from lava_deploy.errors import DeployError  # noqa: E402
from lava_deploy.transformers.convert import calibrate, convert  # noqa: E402
from lava_deploy.transformers.encoder import TransformerClassifier, text_batch  # noqa: E402

pytestmark = pytest.mark.lava

SAMPLES, TOKENS, STEPS = 50, 8, 4
#: float64 on both sides with the same kernels: they differ by matrix-product rounding (~1e-15) alone.
TOLERANCE = 1e-9


def _block():
    torch.manual_seed(6)
    config = transformers.BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16)
    bert = transformers.BertModel(config).eval().double()
    classifier = TransformerClassifier(bert, torch.nn.Linear(16, 2).double())
    ids = torch.randint(1, 60, (SAMPLES, TOKENS))
    mask = torch.ones(SAMPLES, TOKENS, dtype=torch.long)
    mask[SAMPLES // 2:, 5:] = 0         # padded samples: the softmax ignores their last keys
    batch = text_batch({"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)})
    return convert(classifier, calibrate(classifier, [batch]), "ec"), batch


def test_lava_block_matches_the_pytorch_simulation_on_50_inputs():
    from lava_deploy.transformers.lava_block import run_block

    spiking, batch = _block()
    with torch.no_grad():
        current = spiking.classifier.embed(batch)
    expected = spiking.trace(current, batch.token_valid, STEPS).transpose(0, 1).numpy()
    got = run_block(spiking, current.numpy(), batch.token_valid.numpy(), STEPS)
    real = batch.token_valid.numpy()[:, None, :, None]
    assert got.shape == (SAMPLES, STEPS, TOKENS, 16)
    assert np.abs(expected).max() > 0.5           # a real signal, not zeros on both sides
    assert (np.abs(got - expected) * real).max() <= TOLERANCE


def test_lava_block_refuses_what_it_does_not_run():
    from lava_deploy.transformers.lava_block import run_block

    spiking, batch = _block()
    other = convert(spiking.classifier, spiking.calibration, "sta")
    with pytest.raises(DeployError, match="expectation compensation"):
        run_block(other, np.zeros((1, TOKENS, 16)), np.ones((1, TOKENS), dtype=bool), STEPS)
