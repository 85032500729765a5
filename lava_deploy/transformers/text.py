"""MiniLM on movie-review sentiment: the model and tokenizer from the data folder, a fixed split, a linear head.

The encoder is frozen; only a linear head on its mean-pooled embedding is
trained (logistic regression, standardization folded into the weights). The
split is fixed: a permutation of the 33,530 reviews (IMDB and Rotten Tomatoes
together) by ``numpy.random.default_rng(0)``; its first 20 % (6,706 reviews) is
the held-out split, the rest the training split. The head trains on the first
reviews of the training split, the thresholds calibrate on its last 64.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch import nn

from lava_deploy.data.datasets import data_dir
from lava_deploy.data.fetch_text import load_reviews
from lava_deploy.errors import DeployError
from lava_deploy.transformers.convert import (GROUP_SIZE, LEVELS, MAX_STEPS, PERCENTILE, Calibration,
                                              ConversionResult, calibrate, convert, evaluate)
from lava_deploy.transformers.encoder import Batch, TransformerClassifier, text_batch
from lava_deploy.transformers.spiking import METHODS

MINILM = "all-minilm-l6-v2"
SPLIT_SEED, TEST_FRACTION = 0, 0.2
#: Tokens per review, [CLS] and [SEP] included (longer reviews are truncated).
MAX_TOKENS = 128
#: The head's inverse L2 strength: the best of 0.01, 0.1, 1 and 10 with 3,000 training reviews fitting and the
#: next 1,000 validating (75.8 % against 73.7 % at 1).
HEAD_C = 0.01
#: Reviews the thresholds are calibrated on (4 batches of 16).
CALIBRATION_REVIEWS = 64


class Split(NamedTuple):
    """Indices of the training and held-out reviews."""

    train: np.ndarray
    test: np.ndarray


def review_split(count: int) -> Split:
    """The fixed split: held-out = the first 20 % of a seed-0 permutation, training = the rest."""
    order = np.random.default_rng(SPLIT_SEED).permutation(count)
    cut = int(round(TEST_FRACTION * count))
    return Split(order[cut:], order[:cut])


def load_minilm(folder: str | Path | None = None) -> tuple[nn.Module, object]:
    """all-MiniLM-L6-v2 (``transformers.BertModel``, eval mode) and its tokenizer, from the data folder, offline.

    Raises:
        DeployError: the model is not there (names the fetch command) or transformers is not installed.
    """
    target = data_dir(folder) / MINILM
    return load_pretrained(target, f"run 'lava-deploy data fetch {MINILM}'")


def require_transformers() -> ModuleType:
    """The Hugging Face ``transformers`` package, or a one-line error naming the extra that installs it."""
    try:
        import transformers
    except ImportError:
        raise DeployError("converting Transformers needs the 'transformers' package: "
                          "pip install 'lava-deploy[transformers]'") from None
    return transformers


def load_pretrained(path: str | Path, hint: str = "", model_class: str = "AutoModel") -> tuple[nn.Module, object]:
    """A Hugging Face model folder (config.json and weights, optional tokenizer) as (model, tokenizer or None).

    Nothing is fetched: ``local_files_only``. The model is in eval mode with gradients off. ``model_class`` names
    the transformers class that reads it (``AutoModel``: the encoder alone).
    """
    transformers = require_transformers()
    path = Path(path)
    if not (path / "config.json").is_file():
        raise DeployError(f"no Hugging Face model in {path} (no config.json)" + (f": {hint}" if hint else ""))
    try:
        model = getattr(transformers, model_class).from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise DeployError(f"{path}: not a loadable {model_class} ({str(exc).splitlines()[0]})") from None
    tokenizer = None
    if (path / "tokenizer_config.json").is_file() or (path / "tokenizer.json").is_file():
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model.eval().requires_grad_(False)
    return model, tokenizer


def tokenize(tokenizer: object, texts: Sequence[str], max_tokens: int = MAX_TOKENS) -> dict[str, torch.Tensor]:
    """Token ids and attention masks, truncated to ``max_tokens`` and padded to the longest of ``texts``."""
    batch = tokenizer(list(texts), truncation=True, max_length=max_tokens, padding=True, return_tensors="pt")
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
            "token_type_ids": batch.get("token_type_ids", torch.zeros_like(batch["input_ids"]))}


def text_batches(tokenizer: object, texts: Sequence[str], batch_size: int,
                 max_tokens: int = MAX_TOKENS) -> list[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """Batches of (indices into ``texts``, tokens), reviews of similar length together so that little is padding."""
    lengths = np.array([len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_tokens)["input_ids"]])
    order = np.argsort(lengths, kind="stable")
    return [(order[i:i + batch_size], tokenize(tokenizer, [texts[j] for j in order[i:i + batch_size]], max_tokens))
            for i in range(0, len(order), batch_size)]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors over the real (unpadded) tokens, as sentence-transformers pools."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


@torch.no_grad()
def embed(model: nn.Module, tokenizer: object, texts: Sequence[str], batch_size: int = 32,
          progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
    """Mean-pooled embeddings (N, hidden) of ``texts`` by the frozen encoder, float32."""
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for index, tokens in text_batches(tokenizer, texts, batch_size):
        hidden = model(**tokens).last_hidden_state
        out[index] = mean_pool(hidden, tokens["attention_mask"]).numpy()
        if progress:
            progress(len(index))
    return out


def train_head(embeddings: np.ndarray, labels: np.ndarray, c: float = HEAD_C, seed: int = 0) -> nn.Linear:
    """A linear head (hidden -> classes) by logistic regression on standardized embeddings, folded back.

    L2-regularized with inverse strength ``c``; the standardization's mean and scale
    are folded into the weights and bias so that the head reads the raw pooled embedding.
    """
    from sklearn.linear_model import LogisticRegression

    mean, scale = embeddings.mean(0), embeddings.std(0) + 1e-6
    fit = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit((embeddings - mean) / scale, labels)
    weight = fit.coef_ / scale
    bias = fit.intercept_ - weight @ mean
    if weight.shape[0] == 1:        # binary: logits (-z/2, z/2) give the same argmax and softmax as sigmoid(z)
        weight, bias = np.concatenate([-weight, weight]) / 2, np.concatenate([-bias, bias]) / 2
    head = nn.Linear(embeddings.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return head.requires_grad_(False)


def review_batches(tokenizer: object, reviews: object, indices: np.ndarray,
                   batch_size: int = 16) -> list[tuple[Batch, np.ndarray]]:
    """(batch, labels) of the reviews at ``indices`` (a :class:`~lava_deploy.data.fetch_text.Reviews`), by length."""
    texts = [reviews.texts[i] for i in indices]
    labels = np.asarray(reviews.labels)[indices]
    return [(text_batch(tokens), labels[order]) for order, tokens in text_batches(tokenizer, texts, batch_size)]


def calibration_reviews(split: Split, count: int = CALIBRATION_REVIEWS) -> np.ndarray:
    """The calibration reviews: the last ``count`` of the training split (the head trains on its first ones)."""
    return split.train[-count:]


def sentiment_classifier(model: nn.Module, tokenizer: object, reviews: object, split: Split, train_reviews: int,
                         embeddings: Optional[np.ndarray] = None,
                         progress: Optional[Callable[[int], None]] = None) -> tuple[TransformerClassifier, np.ndarray]:
    """The frozen encoder with a linear head trained on the first ``train_reviews`` of the training split.

    Returns the classifier and the training embeddings (pass them back as ``embeddings`` to skip the encoder).
    """
    if not 2 <= train_reviews <= len(split.train) - CALIBRATION_REVIEWS:
        raise DeployError(f"train on 2 to {len(split.train) - CALIBRATION_REVIEWS} reviews, not {train_reviews}")
    index = split.train[:train_reviews]
    if embeddings is None or len(embeddings) != train_reviews:
        embeddings = embed(model, tokenizer, [reviews.texts[i] for i in index], progress=progress)
    return TransformerClassifier(model, train_head(embeddings, np.asarray(reviews.labels)[index])), embeddings


@dataclass
class SentimentRun:
    """MiniLM's sentiment classifier converted by each method and run on held-out reviews."""

    results: dict[str, ConversionResult]
    classifier: TransformerClassifier
    calibration: Calibration
    train_embeddings: np.ndarray


def convert_sentiment(methods: Sequence[str] = METHODS, samples: int = 1000, train_reviews: int = 4000,
                      steps: int = MAX_STEPS, model_dir: str | Path | None = None, folder: str | Path | None = None,
                      levels: int = LEVELS, group_size: int = GROUP_SIZE, percentile: float = PERCENTILE,
                      batch_size: int = 16, train_embeddings: Optional[np.ndarray] = None,
                      progress: Optional[Callable[[str, int], None]] = None) -> SentimentRun:
    """Train the head, calibrate, convert by each of ``methods`` and run ``steps`` steps on held-out reviews.

    Args:
        methods: ``ec`` and/or ``sta``.
        samples: the first held-out reviews to run on.
        train_reviews: training reviews for the head.
        steps: time steps of the run (every T up to it is reported).
        model_dir: a BERT-family model folder with its tokenizer (default: the fetched all-MiniLM-L6-v2).
        folder: the data folder (reviews, and the default model).
        levels, group_size, percentile: see :func:`~lava_deploy.transformers.convert.convert` and
            :func:`~lava_deploy.transformers.convert.calibrate`.
        train_embeddings: the training embeddings of an earlier run (skips the encoder on them).
        progress: called with (stage, reviews done).
    """
    say = progress or (lambda stage, n: None)
    if not 1 <= steps <= 64:
        raise DeployError(f"steps must be 1..64, not {steps}")
    reviews = load_reviews(folder)
    split = review_split(len(reviews.texts))
    if not 1 <= samples <= len(split.test):
        raise DeployError(f"samples must be 1..{len(split.test)}, not {samples}")
    model, tokenizer = load_minilm(folder) if model_dir is None else load_pretrained(model_dir)
    if tokenizer is None:
        raise DeployError(f"{model_dir}: no tokenizer in the model folder")
    classifier, train_embeddings = sentiment_classifier(model, tokenizer, reviews, split, train_reviews,
                                                        train_embeddings, lambda n: say("embedding", n))
    calibration = calibrate(classifier, [b for b, _ in review_batches(tokenizer, reviews, calibration_reviews(split),
                                                                     batch_size)], percentile)
    batches = review_batches(tokenizer, reviews, split.test[:samples], batch_size)
    results = {}
    for method in methods:
        spiking = convert(classifier, calibration, method, levels, group_size)
        results[method] = evaluate(spiking, batches, steps, lambda n, m=method: say(m, n))
    return SentimentRun(results, classifier, calibration, train_embeddings)
