"""The conv synapse kind: PyTorch's cross-correlation (netx ``type`` = ``conv``; also every shortcut)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from lava_deploy.network.graph import Synapse, conv_output_size, register_synapse


@register_synapse
@dataclass
class ConvSynapse(Synapse):
    """``weight_mantissa`` is ``(out, in / groups, kH, kW)``, PyTorch's cross-correlation kernel.

    Attributes:
        stride, padding, dilation: (H, W) pairs.
        groups: grouped convolution.
    """

    kind = "conv"
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """PyTorch's convolution output ``(C_out, H, W)``."""
        kh, kw = self.weight_mantissa.shape[2:]
        return (int(self.weight_mantissa.shape[0]),
                *(conv_output_size(self.input_shape[1 + a], (kh, kw)[a], self.stride[a], self.padding[a],
                                   self.dilation[a]) for a in range(2)))

    def current(self, x: torch.Tensor, single: bool) -> torch.Tensor:
        """oneDNN's direct convolution or unfold and a matrix product in float32; conv2d in float64.

        PyTorch's own convolution dispatch may pick Winograd or FFT (NNPACK),
        which round: never used in float32.
        """
        dtype = torch.float32 if single else torch.float64
        weight = torch.from_numpy(self.weight).to(dtype)
        x = x.to(dtype)
        if single and torch.backends.mkldnn.is_available():
            out = torch.mkldnn_convolution(x.contiguous(), weight.contiguous(), None, self.padding, self.stride,
                                           self.dilation, self.groups)
        elif single and self.groups == 1:
            columns = F.unfold(x, weight.shape[2:], dilation=self.dilation, padding=self.padding, stride=self.stride)
            out = (weight.reshape(len(weight), -1) @ columns).reshape(len(x), *self.output_shape)
        else:
            out = F.conv2d(x.to(torch.float64), weight.to(torch.float64), stride=self.stride, padding=self.padding,
                           dilation=self.dilation, groups=self.groups)
        return out.to(dtype)

    def write_netx(self, group: h5py.Group) -> None:
        """netx's conv keys (pairs in (H, W) order), ``weight`` and ``weightExponent``."""
        group.create_dataset("shape", data=np.array(self.output_shape))
        group.create_dataset("inChannels", data=self.input_shape[0])
        group.create_dataset("outChannels", data=self.output_shape[0])
        group.create_dataset("kernelSize", data=np.array(self.weight_mantissa.shape[2:]))
        for key in ("stride", "padding", "dilation"):
            group.create_dataset(key, data=np.array(getattr(self, key)))
        group.create_dataset("groups", data=self.groups)
        group.create_dataset("weight", data=self.weight)
        group.create_dataset("weightExponent", data=self.weight_exp)

    @classmethod
    def read_netx(cls, reader: Any, group: h5py.Group, where: str, input_shape: tuple[int, int, int],
                  shortcut: bool) -> "ConvSynapse":
        """Read and check the keys; in a shortcut's ``skip`` group ``shape``, ``dilation`` and ``groups`` may be
        absent (files of format 1 omit them: dilation 1, groups 1)."""
        def present(key: str) -> bool:
            return not shortcut or key in group
        pairs = reader.pairs(group, ("kernelSize", "stride") + (("dilation",) if present("dilation") else ()), where,
                             1, reader.max_side)
        pairs.update(reader.pairs(group, ("padding",), where, 0, reader.max_side))
        out = reader.scalar(group, "outChannels", where, 1, reader.max_neurons)
        groups = reader.scalar(group, "groups", where, 1, input_shape[0]) if present("groups") else 1
        if reader.scalar(group, "inChannels", where) != input_shape[0]:
            raise reader.fail(where, f"'inChannels' is not the {input_shape[0]} channels of its source")
        if input_shape[0] % groups or out % groups:
            raise reader.fail(where, f"'groups' {groups} does not divide the {input_shape[0]} input and {out} "
                                     "output channels")
        exp = reader.weight_exponent(group, where)
        geometry = dict(stride=pairs["stride"], padding=pairs["padding"], dilation=pairs.get("dilation", (1, 1)),
                        groups=groups)
        # Checked before the weight is read: the shape bounds what reading it allocates.
        probe = cls(np.zeros((out, 1, *pairs["kernelSize"]), np.int64), exp, tuple(input_shape), **geometry)
        if min(probe.output_shape) < 1 or np.prod(probe.output_shape) > reader.max_neurons:
            raise reader.fail(where, f"the conv's output shape {probe.output_shape} is empty or larger than "
                                     f"{reader.max_neurons} neurons")
        if present("shape") and tuple(reader.integers(group, "shape", where)) != probe.output_shape:
            raise reader.fail(where, f"'shape' is not the conv's output shape {probe.output_shape}")
        weight = reader.integers(group, "weight", where, (out, input_shape[0] // groups, *pairs["kernelSize"]))
        return cls(reader.mantissa(where, weight, exp), exp, tuple(input_shape), **geometry)

    def lava_process(self, message_bits: int) -> Any:
        """lava's Conv: netx's convention, PyTorch's kernel flipped into Lava's (C_out, kW, kH, C_in) convolution."""
        from lava.proc.conv.process import Conv
        kernel = self.weight_mantissa[:, :, ::-1, ::-1].transpose(0, 3, 2, 1).astype(np.int32)
        return Conv(weight=kernel, weight_exp=self.weight_exp, input_shape=self.lava_shape(self.input_shape),
                    padding=self.padding[::-1], stride=self.stride[::-1], dilation=self.dilation[::-1],
                    groups=self.groups, num_message_bits=message_bits)

    def lava_shape(self, shape: tuple[int, int, int]) -> tuple[int, ...]:
        """``(W, H, C)``."""
        c, h, w = shape
        return (w, h, c)

    def fan_out_map(self) -> np.ndarray:
        """Synapses each input reaches: the transposed convolution of ones (fewer near the border)."""
        out_c, in_per_group, kh, kw = self.weight_mantissa.shape
        ones_out = torch.ones((1, *self.output_shape), dtype=torch.float64)
        ones_kernel = torch.ones((out_c, in_per_group, kh, kw), dtype=torch.float64)
        reach = torch.nn.grad.conv2d_input((1, *self.input_shape), ones_kernel, ones_out, stride=self.stride,
                                           padding=self.padding, dilation=self.dilation, groups=self.groups)
        return reach[0].numpy()

    def input_axons(self, tile_h: int, tile_w: int) -> int:
        """The input patch under a tile of output positions, all channels."""
        channels, height, width = self.input_shape
        (kh, kw), (sh, sw), (dh, dw) = self.weight_mantissa.shape[2:], self.stride, self.dilation
        patch_h = min(height, (tile_h - 1) * sh + dh * (kh - 1) + 1)
        patch_w = min(width, (tile_w - 1) * sw + dw * (kw - 1) + 1)
        return channels * patch_h * patch_w
