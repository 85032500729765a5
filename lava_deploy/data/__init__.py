"""Data: datasets by spec with fixed splits, and the input encoding every stage shares.

The lowest layer of the package besides errors, chip constants and file
helpers: training, conversion, the reference and every backend read their
samples through it.
"""
from lava_deploy.data.datasets import (Dataset, check_input_shape, dequantize_input, load_dataset,
                                       quantize_input)

__all__ = ["Dataset", "load_dataset", "check_input_shape", "quantize_input", "dequantize_input"]
