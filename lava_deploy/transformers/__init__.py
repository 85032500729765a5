"""Pretrained Transformers converted to spiking networks without training.

Two published methods, simulated step by step in PyTorch (batched): expectation
compensation with multi-threshold neurons, and spatio-temporal approximation
(:mod:`lava_deploy.transformers.spiking`). A Hugging Face BERT-family encoder
with a linear head, or a ViT, is read as one forward pass of named sites
(:mod:`~lava_deploy.transformers.encoder`); the ANN calibrates the thresholds
(:mod:`~lava_deploy.transformers.ops`); :mod:`~lava_deploy.transformers.convert`
converts and runs it, reporting accuracy, spikes and operations at every T;
:mod:`~lava_deploy.transformers.text` is MiniLM on movie-review sentiment.
One encoder block runs as Lava Processes in ``lava_block`` (the only module
here that imports Lava). The Hugging Face ``transformers`` package is needed
only to load a model (``pip install 'lava-deploy[transformers]'``).
"""
from __future__ import annotations

from typing import Mapping

from lava_deploy.transformers.convert import (Calibration, ConversionResult, SpikingTransformer, calibrate, convert,
                                              evaluate)
from lava_deploy.transformers.encoder import TransformerClassifier, image_batch, text_batch
from lava_deploy.transformers.spiking import METHODS
from lava_deploy.transformers.text import convert_sentiment, load_minilm, load_pretrained

__all__ = ["TransformerClassifier", "Calibration", "SpikingTransformer", "ConversionResult", "calibrate", "convert",
           "evaluate", "convert_sentiment", "load_minilm", "load_pretrained", "text_batch", "image_batch", "METHODS",
           "format_conversion"]

_NAMES = {"ec": "expectation compensation", "sta": "spatio-temporal approx."}


def format_conversion(results: Mapping[str, ConversionResult]) -> str:
    """A terminal table: the ANN's accuracy, then each method's accuracy and energy ratio at every T."""
    first = next(iter(results.values()))
    lines = [f"ANN accuracy on {len(first.labels)} samples: {first.ann_accuracy:.4f}",
             f"{'T':>3}" + "".join(f"  {_NAMES[m]:>26} acc  energy" for m in results)]
    for t in range(1, first.steps + 1):
        lines.append(f"{t:>3}" + "".join(f"  {r.accuracy(t):>30.4f}  {r.energy_ratio(t):6.3f}" for r in results.values()))
    return "\n".join(lines)
