"""Conversion: QCFS network -> folded integer-domain layers -> Loihi fixed point."""
from __future__ import annotations

from typing import Optional

from torch import nn

from lava_deploy.convert.fixed_point import to_fixed_point
from lava_deploy.convert.fold import fold_model
from lava_deploy.convert.vit import convert_vit, find_vit
from lava_deploy.network import SpikingNetwork, validate_network
from lava_deploy.errors import DeployError
from lava_deploy.qcfs.models import qcfs_layers

__all__ = ["convert_model"]


def convert_model(model: nn.Module, input_shape: tuple[int, int, int], input_bits: int,
                  class_names: list[str], metadata: Optional[dict] = None) -> SpikingNetwork:
    """Convert a trained QCFS ``nn.Sequential`` (or Vision Transformer) into the integer spiking network.

    T is the largest ``ceil(log2(L + 1))`` over the model's QCFS activations.

    Raises:
        DeployError: a module without exact spiking equivalent, or a layer that
            cannot fit Loihi's 24-bit state or weight exponent range.
    """
    activations = qcfs_layers(model)
    if not activations:
        raise DeployError("the model has no QCFS activation: train it with QCFS (lava_deploy.qcfs.activation.QCFS)")
    time_steps = max(a.time_steps for a in activations)
    vit = find_vit(model)
    try:
        if vit is not None:
            if (vit.input_bits, tuple(vit.input_shape)) != (input_bits, tuple(input_shape)):
                raise DeployError(f"the vit was built for {vit.input_bits}-bit {vit.input_shape} inputs, not "
                                  f"{input_bits}-bit {tuple(input_shape)}")
            network = convert_vit(vit, time_steps, class_names, metadata)
        else:
            folded = fold_model(model.eval(), input_shape, input_bits)
            network = to_fixed_point(folded, time_steps, input_bits, input_shape, class_names, metadata)
    except ValueError as exc:
        raise DeployError(str(exc)) from None
    validate_network(network)       # e.g. weights too large for the chip's weight exponent
    return network
