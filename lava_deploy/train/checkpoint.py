"""Checkpoints: the state dict plus everything needed to rebuild and convert the model."""
from __future__ import annotations

import hashlib
import pickle
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from lava_deploy import chip
from lava_deploy.errors import DeployError
from lava_deploy.files import atomic_output
from lava_deploy.qcfs.models import build_model

FORMAT = "lava-deploy-checkpoint"
VERSION = 1
#: Largest image side a checkpoint may describe.
_MAX_SIDE = 1 << 14


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

    Nothing in the file can run code: it is read with ``weights_only=True``
    (plain dicts, lists, strings, numbers and tensors only), the recorded
    model description is type-checked, and the model is first built on
    PyTorch's meta device (no memory) and compared with the stored tensors
    before it is built for real, so a description cannot make it allocate
    more than the file holds.

    Raises:
        DeployError: missing, unreadable, foreign or damaged file (one line).
    """
    path = Path(path)
    payload = read_plain_file(path, "save a state dict, or re-train with 'lava-deploy train' / save_checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DeployError(f"{path} is not a lava-deploy checkpoint (train one with 'lava-deploy train')")
    if payload.get("version") != VERSION:
        raise DeployError(f"checkpoint {path} has format version {payload.get('version')!r}; this lava-deploy "
                          f"reads version {VERSION}")
    try:
        info = _model_info(payload.get("info"))
        state = payload.get("state_dict")
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError("'state_dict' is not a dict of tensors")
        with torch.device("meta"):
            expected = build_model(info.spec, info.input_shape, info.levels).state_dict()
        if {k: tuple(v.shape) for k, v in expected.items()} != {k: tuple(v.shape) for k, v in state.items()}:
            raise ValueError("its tensors do not match the model it describes")
        model = build_model(info.spec, info.input_shape, info.levels)
        model.load_state_dict(state)
    except DeployError as exc:
        raise DeployError(f"checkpoint {path} is damaged: {exc}") from None
    except Exception as exc:
        raise DeployError(f"checkpoint {path} is damaged: {_first_line(exc)}") from None
    return model.eval(), info


def read_plain_file(path: Path, advice: str) -> object:
    """What ``torch.save`` wrote into ``path``, read as plain data and tensors only (``weights_only=True``).

    Args:
        path: the file.
        advice: what to do instead, for a file that holds other objects.

    Raises:
        DeployError: a missing or unreadable file, or one that holds objects other than plain data (one line).
    """
    if path.is_dir():
        raise DeployError(f"checkpoint {path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise DeployError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DeployError(f"{path} holds objects other than plain data and tensors ({_first_line(exc)}); "
                          f"lava-deploy never unpickles them: {advice}") from None
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise DeployError(f"cannot read checkpoint {path}: {_first_line(exc)}") from None


def _model_info(data: object) -> ModelInfo:
    """Type-check the recorded model description before anything is built from it."""
    if not isinstance(data, dict) or set(data) != {f.name for f in fields(ModelInfo)}:
        raise ValueError("'info' does not describe a model")
    shape = data["input_shape"]
    checks = {
        "model": isinstance(data["model"], str),
        "spec": isinstance(data["spec"], list) and all(isinstance(layer, dict) and _plain(layer)
                                                       for layer in data["spec"]),
        "input_shape": isinstance(shape, (list, tuple)) and len(shape) == 3
        and all(isinstance(s, int) and 1 <= s <= _MAX_SIDE for s in shape),
        "levels": isinstance(data["levels"], int) and 1 <= data["levels"] < (1 << chip.TIME_STEPS_MAX),
        "input_bits": isinstance(data["input_bits"], int)
        and chip.INPUT_BITS_MIN <= data["input_bits"] <= chip.INPUT_BITS_MAX,
        "dataset": isinstance(data["dataset"], str),
        "class_names": isinstance(data["class_names"], list) and all(isinstance(n, str) for n in data["class_names"]),
        "metrics": isinstance(data["metrics"], dict) and _plain(data["metrics"]),
        "training": isinstance(data["training"], dict) and _plain(data["training"]),
    }
    bad = [key for key, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"'info' has a malformed '{bad[0]}'")
    return ModelInfo(**{**data, "input_shape": tuple(shape)})


def _plain(value: object) -> bool:
    """True for JSON-like data: what a model description may hold."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


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
