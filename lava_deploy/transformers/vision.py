"""The float twin of the shipped spiking ViT: the same architecture trained in float, converted without training.

``lava-deploy train --model vit`` (issue 15) trains a ViT whose every activation
is a QCFS code and converts it error-free. Here the same shape (4x4 patches of
the image, width 64, two pre-norm blocks of 4-head attention and a 128-wide
GELU MLP, mean over tokens, linear head) is a Hugging Face ``ViTModel`` trained
in plain float, then converted by the training-free methods, so that the two
routes compare on one architecture and one dataset. The Hugging Face model
adds what its family always has: a class token (pooled with the patches) and
a final LayerNorm.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lava_deploy.data.datasets import Dataset
from lava_deploy.errors import DeployError
from lava_deploy.files import atomic_output
from lava_deploy.qcfs.vit import vit_spec
from lava_deploy.train.checkpoint import read_plain_file
from lava_deploy.transformers.convert import (GROUP_SIZE, LEVELS, MAX_STEPS, PERCENTILE, Calibration,
                                              ConversionResult, calibrate, convert, evaluate)
from lava_deploy.transformers.encoder import Batch, TransformerClassifier, image_batch
from lava_deploy.transformers.spiking import METHODS
from lava_deploy.transformers.text import load_pretrained, require_transformers

#: Images the thresholds are calibrated on: the last ones of the training split (4 batches of 16).
CALIBRATION_IMAGES = 64


def float_vit(input_shape: Sequence[int], num_classes: int, seed: int = 0) -> TransformerClassifier:
    """An untrained float ViT of the ``vit`` family's shape for ``(C, H, W)`` inputs, with a mean-pooled head."""
    transformers = require_transformers()
    spec = vit_spec(input_shape, num_classes, input_bits=8)
    channels, height, _ = input_shape
    torch.manual_seed(seed)
    config = transformers.ViTConfig(image_size=height, patch_size=spec["patch"], num_channels=channels,
                                    hidden_size=spec["dim"], num_hidden_layers=spec["depth"],
                                    num_attention_heads=spec["heads"], intermediate_size=spec["mlp"],
                                    hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    encoder = transformers.ViTModel(config, add_pooling_layer=False)
    return TransformerClassifier(encoder, nn.Linear(spec["dim"], num_classes), "mean")


def load_vit_classifier(path: str | Path) -> TransformerClassifier:
    """A Hugging Face ``ViTForImageClassification`` folder (config.json and weights), offline, as a classifier.

    Raises:
        DeployError: no such folder, not an image-classification ViT, or transformers missing (one line).
    """
    model, _ = load_pretrained(path, model_class="ViTForImageClassification")
    return TransformerClassifier.from_pretrained(model)


def tokens_of(classifier: TransformerClassifier) -> int:
    """Sequence length of a ViT classifier: its patches and class token."""
    config = classifier.encoder.config
    return (config.image_size // config.patch_size) ** 2 + 1


def _logits(classifier: TransformerClassifier, images: torch.Tensor) -> torch.Tensor:
    """The float classifier through Hugging Face's own forward (fast, differentiable)."""
    hidden = classifier.encoder(pixel_values=images).last_hidden_state
    valid = torch.ones(hidden.shape[:2], dtype=torch.bool)
    return classifier.head(classifier.pool(hidden, valid))


def train_float_vit(dataset: Dataset, epochs: int = 8, batch_size: int = 128, lr: float = 1.5e-3, seed: int = 0,
                    progress: Optional[Callable[[int, float], None]] = None) -> TransformerClassifier:
    """Train :func:`float_vit` on ``dataset``'s training split in float (AdamW, cosine schedule, seeded).

    ``progress`` is called after each epoch with (epoch, mean training loss).
    """
    classifier = float_vit(dataset.input_shape, dataset.num_classes, seed)
    x, y = torch.as_tensor(dataset.x_train, dtype=torch.float32), torch.as_tensor(dataset.y_train)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=lr, weight_decay=0.05)
    batches = -(-len(x) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * batches, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    classifier.train()
    for epoch in range(1, epochs + 1):
        order, total = torch.randperm(len(x), generator=generator), 0.0
        for i in range(batches):
            index = order[i * batch_size:(i + 1) * batch_size]
            loss = F.cross_entropy(_logits(classifier, x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss) * len(index)
        if progress:
            progress(epoch, total / len(x))
    return classifier.eval().requires_grad_(False)


def save_float_vit(classifier: TransformerClassifier, path: str | Path) -> None:
    """Write the classifier's weights (a plain tensor state dict), atomically."""
    with atomic_output(path) as tmp:
        torch.save(classifier.state_dict(), tmp)


def load_float_vit(path: str | Path, input_shape: Sequence[int], num_classes: int) -> TransformerClassifier:
    """Weights written by :func:`save_float_vit` into the ``vit`` shape; never unpickled (``weights_only``)."""
    classifier = float_vit(input_shape, num_classes)
    state = read_plain_file(Path(path), "save the weights with save_float_vit")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DeployError(f"{path}: not a float ViT's weights (a dict of tensors)")
    try:
        classifier.load_state_dict(state)
    except RuntimeError as exc:
        raise DeployError(f"{path}: not a float ViT of this shape ({str(exc).splitlines()[0]})") from None
    return classifier.eval().requires_grad_(False)


@torch.no_grad()
def accuracy(classifier: TransformerClassifier, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> float:
    """The float classifier's accuracy on images ``x`` with labels ``y``."""
    right = 0
    for i in range(0, len(x), batch_size):
        logits = _logits(classifier, torch.as_tensor(x[i:i + batch_size], dtype=torch.float32))
        right += int((logits.argmax(1).numpy() == y[i:i + batch_size]).sum())
    return right / len(x)


def image_batches(classifier: TransformerClassifier, x: np.ndarray, y: np.ndarray,
                  batch_size: int) -> list[tuple[Batch, np.ndarray]]:
    """(batch, labels) of images in order."""
    tokens = tokens_of(classifier)
    return [(image_batch(torch.as_tensor(x[i:i + batch_size], dtype=torch.float32), tokens), y[i:i + batch_size])
            for i in range(0, len(x), batch_size)]


def convert_images(classifier: TransformerClassifier, dataset: Dataset, methods: Sequence[str] = METHODS,
                   samples: int = 1000, steps: int = MAX_STEPS, levels: int = LEVELS, group_size: int = GROUP_SIZE,
                   percentile: float = PERCENTILE, batch_size: int = 100,
                   progress: Optional[Callable[[str, int], None]] = None) -> tuple[dict[str, ConversionResult],
                                                                                  Calibration]:
    """Calibrate on the last training images, convert by each method, run ``steps`` steps on the first test images.

    Raises:
        DeployError: the images do not fit the model, or ``samples`` is out of range (one line).
    """
    if not 1 <= samples <= len(dataset.x_test):
        raise DeployError(f"samples must be 1..{len(dataset.x_test)}, not {samples}")
    config = classifier.encoder.config
    shape = (config.num_channels, config.image_size, config.image_size)
    if tuple(dataset.input_shape) != shape:
        raise DeployError(f"{dataset.name}: images {tuple(dataset.input_shape)} (C, H, W), the ViT takes {shape}")
    if classifier.head.out_features != dataset.num_classes:
        raise DeployError(f"{dataset.name}: {dataset.num_classes} classes, the ViT's head has "
                          f"{classifier.head.out_features}")
    calibration = calibrate(classifier, [b for b, _ in image_batches(
        classifier, dataset.x_train[-CALIBRATION_IMAGES:], dataset.y_train[-CALIBRATION_IMAGES:], 16)], percentile)
    batches = image_batches(classifier, dataset.x_test[:samples], dataset.y_test[:samples], batch_size)
    say = progress or (lambda stage, n: None)
    return {method: evaluate(convert(classifier, calibration, method, levels, group_size), batches, steps,
                             lambda n, m=method: say(m, n))
            for method in methods}, calibration
