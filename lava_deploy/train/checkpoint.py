"""Checkpoints: the state dict plus everything needed to rebuild and convert the model."""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from lava_deploy.errors import DeployError
from lava_deploy.files import atomic_output
from lava_deploy.train.models import build_model

FORMAT = "lava-deploy-checkpoint"
VERSION = 1


@dataclass
class ModelInfo:
    """What a checkpoint records beside the weights.

    Attributes:
        model: family name (``mlp``, ``cnn``) or ``custom``.
        spec: layer descriptions that rebuild the ``nn.Sequential``.
        input_shape: ``(C, H, W)``.
        levels: QCFS levels L (2**T - 1 for T time steps).
        input_bits: T_in; an input pixel is k / (2**T_in - 1), k in 0..2**T_in - 1,
            with no mean/std normalization (BatchNorm absorbs the scale).
        dataset: the dataset spec the model was trained on.
        class_names: label names, index = class.
        metrics: measured figures (float test accuracy, spikes per sample, ...).
        training: the training arguments, for the record.
    """

    model: str
    spec: list[dict]
    input_shape: tuple[int, int, int]
    levels: int
    input_bits: int
    dataset: str
    class_names: list[str]
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)

    @property
    def time_steps(self) -> int:
        """T = ceil(log2(L + 1))."""
        return max(1, (self.levels).bit_length())


def save_checkpoint(path: str | Path, model: nn.Module, info: ModelInfo) -> None:
    """Write a checkpoint atomically (temporary file, then rename)."""
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, "info": asdict(info), "state_dict": model.state_dict()}
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> tuple[nn.Sequential, ModelInfo]:
    """Rebuild the trained model (in eval mode) and its info from a checkpoint.

    Raises:
        DeployError: missing, unreadable or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise DeployError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise DeployError(f"cannot read checkpoint {path}: {_first_line(exc)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DeployError(f"{path} is not a lava-deploy checkpoint (train one with 'lava-deploy train')")
    try:
        info_dict = dict(payload["info"])
        info_dict["input_shape"] = tuple(info_dict["input_shape"])
        info = ModelInfo(**info_dict)
        model = build_model(info.spec, info.input_shape, info.levels)
        model.load_state_dict(payload["state_dict"])
    except DeployError:
        raise
    except Exception as exc:
        raise DeployError(f"checkpoint {path} is damaged: {_first_line(exc)}") from None
    return model.eval(), info


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, recorded as the provenance of an export."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
