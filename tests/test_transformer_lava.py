"""One converted BERT block (expectation compensation, 8-threshold neurons) as Lava Processes matches PyTorch."""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from factories import shared_memory_mapped_by  # noqa: E402
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


def test_ctrl_c_during_a_lava_block_run_leaves_no_shared_memory():
    """The run's child is killed with its session: the shared memory of its channels must not stay behind."""
    from lava_deploy.transformers.lava_block import run_block

    spiking, batch = _block()
    with torch.no_grad():
        current = spiking.classifier.embed(batch).numpy()
    seen: set[str] = set()
    caller = threading.get_ident()

    def interrupt_once_lava_runs() -> None:
        deadline = time.monotonic() + 120
        while not seen and time.monotonic() < deadline:
            seen.update(shared_memory_mapped_by([child.pid for child in multiprocessing.active_children()]))
            time.sleep(0.02)
        signal.pthread_kill(caller, signal.SIGINT)
    interrupter = threading.Thread(target=interrupt_once_lava_runs)
    interrupter.start()
    try:
        with pytest.raises(KeyboardInterrupt):      # 20 times the samples: still running when Ctrl-C comes
            run_block(spiking, np.tile(current, (20, 1, 1)), np.tile(batch.token_valid.numpy(), (20, 1)), STEPS)
    finally:
        interrupter.join()
    assert seen, "the run was never seen mapping shared memory: nothing to check"
    assert not seen & set(os.listdir("/dev/shm")), "the run's shared memory is left in /dev/shm"
