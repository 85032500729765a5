"""Training a QCFS network, with the optional fine-grained bit-L1 spike penalty."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from lava_deploy import chip
from lava_deploy.errors import DeployError
from lava_deploy.files import check_output_file
from lava_deploy.train.checkpoint import ModelInfo, save_checkpoint
from lava_deploy.data.datasets import Dataset, dequantize_input, load_dataset, quantize_input
from lava_deploy.qcfs.models import build_model, model_spec, spiking_layers
from lava_deploy.train.quantization_aware import finish_fine_tuning, start_fine_tuning


@dataclass
class TrainConfig:
    """Training arguments (all recorded in the checkpoint).

    Attributes:
        model: ``mlp``, ``cnn``, ``resnet`` or ``vit``.
        dataset: dataset spec (``digits``, ``mnist5k``, ``npz:PATH``, ``cifar10:DIR``).
        bits: T, time steps per sample; QCFS levels L = 2**T - 1.
        input_bits: T_in, bits of the quantized input image.
        epochs, batch_size, lr, weight_decay: optimizer settings (Adam, cosine schedule).
        bit_l1: weight of the bit-L1 penalty (mean spikes per neuron); 0 turns it off.
        qat_epochs: quantization-aware fine-tuning epochs after training (0: none).
        seed: makes the run deterministic.
    """

    model: str = "cnn"
    dataset: str = "digits"
    bits: int = 3
    input_bits: int = 8
    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    bit_l1: float = 0.0
    qat_epochs: int = 5
    seed: int = 0

    def validate(self) -> None:
        """Raise DeployError (one line naming the flag) for arguments outside the supported range."""
        ranges = {  # flag: (value, low, high)
            "--time-steps (T)": (self.bits, chip.TIME_STEPS_MIN, chip.TIME_STEPS_MAX),
            "--input-bits": (self.input_bits, chip.INPUT_BITS_MIN, chip.INPUT_BITS_MAX),
            "--epochs": (self.epochs, 1, 100_000),
            "--batch-size": (self.batch_size, 1, 1 << 20),
            "--qat-epochs": (self.qat_epochs, 0, 100_000),
            "--seed": (self.seed, 0, 2**32 - 1),
            "--lr": (self.lr, 0.0, 10.0),
            "--bit-l1": (self.bit_l1, 0.0, 1000.0),
            "weight decay": (self.weight_decay, 0.0, 1.0),
        }
        for flag, (value, low, high) in ranges.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= high or (isinstance(low, int) and not isinstance(value, int)):
                raise DeployError(f"{flag} must be {'a whole number' if isinstance(low, int) else 'a number'} "
                                  f"in {low}..{high}, got {value}")
        if self.lr == 0:
            raise DeployError("--lr must be greater than 0")


@dataclass
class TrainResult:
    """What training produced: the model, its info and the measured figures."""

    model: nn.Sequential
    info: ModelInfo
    test_accuracy: float
    spikes_per_sample: float


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so that a run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> tuple[float, float]:
    """Float QCFS accuracy and mean spikes per sample (1-bits of all codes) on (x, y)."""
    model.eval()
    layers = spiking_layers(model)
    correct, spikes = 0, 0.0
    with torch.no_grad():
        for layer in layers:
            layer.count_spikes = True
        for start in range(0, len(x), batch_size):
            xb = torch.from_numpy(x[start:start + batch_size])
            out = model(xb)
            correct += int((out.argmax(1).numpy() == y[start:start + batch_size]).sum())
            spikes += sum(float(layer.spike_count) for layer in layers) * len(xb)
        for layer in layers:
            layer.count_spikes = False
    return correct / len(x), spikes / len(x)


def train(config: TrainConfig, output: Optional[str | Path] = None, progress: bool = True,
          dataset: Optional[Dataset] = None) -> TrainResult:
    """Train a QCFS network and optionally save the checkpoint.

    Args:
        config: training arguments.
        output: checkpoint path to write (atomically); None keeps it in memory.
        progress: show a progress bar with loss and accuracy.
        dataset: an already loaded dataset (else ``config.dataset`` is loaded).
    """
    config.validate()
    if output is not None:
        check_output_file(output)       # before training, not after it
    data = dataset or load_dataset(config.dataset)
    seed_everything(config.seed)
    levels = (1 << config.bits) - 1
    spec = model_spec(config.model, data.input_shape, data.num_classes, config.input_bits)
    model = build_model(spec, data.input_shape, levels)
    # The network sees exactly the quantized image that the spiking input will carry.
    x_train = dequantize_input(quantize_input(data.x_train, config.input_bits), config.input_bits)
    x_test = dequantize_input(quantize_input(data.x_test, config.input_bits), config.input_bits)
    y_train = torch.from_numpy(data.y_train)

    # Spikes are normalized per neuron, so the penalty weight does not depend on model size.
    neurons = sum(_neurons_of(model, layer, torch.from_numpy(x_train[:1])) for layer in spiking_layers(model))
    generator = torch.Generator().manual_seed(config.seed)
    phase = dict(x=x_train, y=y_train, neurons=neurons, generator=generator, progress=progress)
    _run_epochs(model, config, config.epochs, config.lr, desc="train", **phase)
    accuracy, spikes = evaluate(model, x_test, data.y_test)
    metrics = {"float_test_accuracy": accuracy, "float_spikes_per_sample": spikes}
    if config.qat_epochs > 0:
        metrics["float_test_accuracy_before_qat"] = accuracy
        model, spec = start_fine_tuning(model, spec, data.input_shape, config.input_bits)
        _run_epochs(model, config, config.qat_epochs, config.lr * 0.1, desc="fine-tune 8-bit", **phase)
        finish_fine_tuning(model)
        accuracy, spikes = evaluate(model, x_test, data.y_test)
        metrics.update(float_test_accuracy=accuracy, float_spikes_per_sample=spikes)
    info = ModelInfo(
        model=config.model, spec=spec, input_shape=tuple(data.input_shape), levels=levels,
        input_bits=config.input_bits, dataset=config.dataset, class_names=list(data.class_names),
        metrics=metrics,
        training={k: getattr(config, k) for k in config.__dataclass_fields__},
    )
    if output is not None:
        save_checkpoint(output, model, info)
    return TrainResult(model=model, info=info, test_accuracy=accuracy, spikes_per_sample=spikes)


def _run_epochs(model: nn.Sequential, config: TrainConfig, epochs: int, lr: float, desc: str,
                x: np.ndarray, y: torch.Tensor, neurons: int, generator: torch.Generator, progress: bool) -> None:
    """Adam with a cosine schedule over ``epochs``; cross-entropy plus the optional bit-L1 penalty."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * -(-len(x) // config.batch_size))
    activations = spiking_layers(model)
    bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        for layer in activations:
            layer.count_spikes = config.bit_l1 > 0
        order = torch.randperm(len(x), generator=generator)
        total_loss, correct = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            idx = order[start:start + config.batch_size]
            xb, yb = torch.from_numpy(x[idx.numpy()]), y[idx]
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            if config.bit_l1 > 0:
                loss = loss + config.bit_l1 * sum(layer.spike_count for layer in activations) / neurons
            if not torch.isfinite(loss):
                raise DeployError(f"{desc}: training diverged (the loss became {float(loss)} in epoch {epoch + 1}); "
                                  "lower --lr or --bit-l1")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += float(loss) * len(idx)
            correct += int((out.argmax(1) == yb).sum())
        bar.set_postfix(loss=f"{total_loss / len(order):.3f}", acc=f"{correct / len(order):.3f}")
    for layer in activations:
        layer.count_spikes = False
    model.eval()


def _neurons_of(model: nn.Module, layer: nn.Module, batch: torch.Tensor) -> int:
    """Neurons per sample behind one QCFS activation (measured with a hook)."""
    sizes = []
    handle = layer.register_forward_hook(lambda m, i, o: sizes.append(o[0].numel()))
    with torch.no_grad():
        model.eval()
        model(batch)
    handle.remove()
    return sizes[0]
