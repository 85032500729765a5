"""A Transformer's neuron kinds: the signed neuron and the integer function units (``docs/transformer-arithmetic.md``).

* ``signed-emit``: codes ``clip(floor(u / S), -L, L)``, sent as signed spikes (sign-magnitude bit planes).
* ``softmax``, ``layernorm``, ``lookup``: function units. They accumulate like a neuron, take the input code
  ``clip(floor(u / S), -L_in, L_in)`` and emit the signed bits of an integer function of those codes, computed
  by :mod:`lava_deploy.network.functions`, the one definition the float model and Lava share.

One class per kind, registered by its ``kind``; each names its netx neuron type and reads its own keys.
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import h5py
import numpy as np
import torch

from lava_deploy import chip
from lava_deploy.errors import DeployError
from lava_deploy.network import functions
from lava_deploy.network.graph import BIT_SERIAL, Neuron, register_neuron
from lava_deploy.network.neurons import AccumulateEmit, popcount


def signed_spikes(codes: torch.Tensor, time_steps: int) -> torch.Tensor:
    """The T signed spikes of codes, int8 ``(T, *codes.shape)`` (``functions.signed_bits``)."""
    return torch.from_numpy(functions.signed_bits(codes.to(torch.int64).numpy(), time_steps))


@register_neuron
@dataclass
class SignedEmit(AccumulateEmit):
    """Codes in ``[-L, L]``; emit: ``v = min(u, L S)``, or ``min(S - 1 - u, L S)`` for u < 0 with the sign
    carried by every spike, then the unsigned neuron's threshold subtractions."""

    kind = "signed-emit"
    signed = True
    netx_type = "SIGNED"

    @property
    def code_range(self) -> tuple[int, int]:
        """``(-L, L)``."""
        return (-self.levels, self.levels)

    def codes(self, potential: torch.Tensor) -> torch.Tensor:
        """``clip(floor(u / S), -L, L)``."""
        return torch.clamp(torch.floor(potential / float(1 << self.scale_exp)), -self.levels, self.levels)

    def spikes(self, potential: torch.Tensor, time_steps: int) -> torch.Tensor:
        """Sign and magnitude register, then T threshold subtractions: int8 -1/0/1 spikes."""
        S = float(1 << self.scale_exp)
        clamp = torch.tensor(float(self.clamp), dtype=potential.dtype)
        negative = potential < 0
        v = torch.minimum(torch.where(negative, S - 1 - potential, potential), clamp)
        sign = 1 - 2 * negative.to(torch.int8)
        theta, out = self.threshold(time_steps), []
        for j in range(time_steps):
            theta_j = float(theta >> j)
            fired = v >= theta_j
            v = v - fired * theta_j
            out.append(fired.to(torch.int8) * sign)
        return torch.stack(out)


@dataclass
class FunctionUnit(Neuron):
    """Accumulate like a neuron, take the input codes, emit an integer function of them (signed bits).

    Attributes:
        levels: L, the largest output code (magnitude).
        input_levels: L_in; the input code is ``clip(floor(u / S), -L_in, L_in)``.
    """

    signed = True
    #: Sends its codes bit-serially, as signed spikes (inherited: it does not set the network's pace).
    encoding = BIT_SERIAL
    levels: int = 1
    input_levels: int = 1
    #: Keys of its own (beyond the common neuron keys) that are one number, with their ranges.
    own_scalars: ClassVar[dict[str, tuple[int, int]]] = {}

    @property
    def code_range(self) -> tuple[int, int]:
        """``(-L, L)`` unless the function says less."""
        return (-self.levels, self.levels)

    def message_bits(self, time_steps: int) -> int:
        """Signed binary spikes: 1 bit of magnitude per step."""
        return 1

    def messages(self, codes: np.ndarray) -> np.ndarray:
        """One spike per 1-bit of the code's magnitude."""
        return popcount(codes)

    def input_codes(self, potential: np.ndarray) -> np.ndarray:
        """``clip(floor(u / S), -L_in, L_in)`` of integer potentials (an arithmetic shift: a floor)."""
        return np.clip(np.asarray(potential, np.int64) >> self.scale_exp, -self.input_levels, self.input_levels)

    #: What it computes, for ``lava-deploy check``'s note on what Loihi 2 would need.
    work: ClassVar[str] = ""
    #: Integer operations per output code (and per position, for a function over channels).
    operations_per_code: ClassVar[int] = 1
    operations_per_position: ClassVar[int] = 0

    @abstractmethod
    def function(self, codes: np.ndarray) -> np.ndarray:
        """The unit's integer function of input codes ``(N, C, H, W)`` (int64 in, int64 out)."""

    def off_chip(self) -> str:
        """A function unit runs on an embedded core or the host, fed by and feeding graded spikes."""
        return f"an embedded core or the host ({self.work})"

    def operations(self, shape: tuple[int, int, int]) -> int:
        """``operations_per_code`` per output code plus ``operations_per_position`` per position."""
        channels, height, width = shape
        return height * width * (channels * self.operations_per_code + self.operations_per_position)

    def integer_codes(self, potential: np.ndarray) -> np.ndarray:
        """Output codes of integer potentials ``(N, C, H, W)``: what the reference and Lava's model compute."""
        return self.function(self.input_codes(potential))

    def codes(self, potential: torch.Tensor) -> torch.Tensor:
        """The output codes, in the potential's dtype."""
        return torch.from_numpy(self.integer_codes(potential.to(torch.int64).numpy())).to(potential.dtype)

    def spikes(self, potential: torch.Tensor, time_steps: int) -> torch.Tensor:
        """The signed bits of the output codes, most significant first."""
        return signed_spikes(self.codes(potential), time_steps)

    def netx_keys(self, time_steps: int) -> dict[str, Any]:
        """The common keys (``levels``, ``scaleExp``, ``vThMant``, ``readout`` = 0) and ``inputLevels``."""
        return {"levels": self.levels, "scaleExp": self.scale_exp, "vThMant": self.threshold(time_steps),
                "readout": 0, "inputLevels": self.input_levels}

    @classmethod
    def from_netx(cls, keys: dict[str, Any]) -> "FunctionUnit":
        """From validated keys (the common ones and the kind's own)."""
        own = {name: keys[key] for name, key in cls._own_keys().items()}
        return cls(scale_exp=keys["scaleExp"], levels=keys["levels"], **own)

    @classmethod
    def _own_keys(cls) -> dict[str, str]:
        """Dataclass field -> netx key of the kind's own keys."""
        return {"input_levels": "inputLevels", **{_field(key): key for key in cls.own_scalars},
                **({"table": "table"} if "table" in cls.__dataclass_fields__ else {})}

    @classmethod
    def read_netx(cls, reader: Any, group: h5py.Group, where: str, keys: dict[str, Any]) -> "FunctionUnit":
        """Read ``inputLevels``, the kind's own numbers and its ``table`` (2 L_in + 1 entries) where it has one."""
        keys = dict(keys)
        T = keys["timeSteps"]
        keys["inputLevels"] = reader.scalar(group, "inputLevels", where, 1, (1 << T) - 1)
        for key, (low, high) in cls.own_scalars.items():
            keys[key] = reader.scalar(group, key, where, low, high)
        if "table" in cls.__dataclass_fields__:
            keys["table"] = reader.integers(group, "table", where, (2 * keys["inputLevels"] + 1,))
        return cls.from_netx(keys)

    def validate(self, time_steps: int, where: str) -> None:
        """Levels within T bits; thresholds integers inside the 24-bit state."""
        super().validate(time_steps, where)
        top = (1 << time_steps) - 1
        for name, value in (("levels", self.levels), ("input levels", self.input_levels)):
            if not 1 <= value <= top:
                raise DeployError(f"{where}: {name} {value} outside 1..{top} for T = {time_steps}")
        if self.scale_exp < time_steps - 1:
            raise DeployError(f"{where}: scale exponent {self.scale_exp} below T - 1 = {time_steps - 1}")
        if (self.input_levels + 1) << self.scale_exp >= chip.STATE_LIMIT:
            raise DeployError(f"{where}: input codes of {self.input_levels} levels at scale 2^{self.scale_exp} do "
                              f"not fit the {chip.STATE_BITS}-bit state")


def _field(key: str) -> str:
    """camelCase netx key -> snake_case field."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


@register_neuron
@dataclass
class Softmax(FunctionUnit):
    """Softmax over each of ``groups`` channel blocks at every position (an attention head's keys for a query).

    Attributes:
        table: the exponential table E (``functions.exp_table``), ``2 L_in + 1`` entries.
        gain: K, the code of probability 1.
        groups: channel blocks (heads).
    """

    kind = "softmax"
    netx_type = "SOFTMAX"
    work = "table lookups, a sum, integer divisions"
    #: max, subtract, lookup, add to the sum, multiply by K, divide
    operations_per_code = 6
    table: np.ndarray = field(default_factory=lambda: np.ones(3, np.int64))
    gain: int = 1
    groups: int = 1
    own_scalars = {"gain": (1, 1 << 16), "groups": (1, 1 << 24)}

    @property
    def code_range(self) -> tuple[int, int]:
        """``(0, min(L, K))``: probabilities are not negative."""
        return (0, min(self.levels, self.gain))

    def function(self, codes: np.ndarray) -> np.ndarray:
        """``functions.softmax_codes``."""
        return functions.softmax_codes(codes, self.table, self.gain, self.levels, self.groups)

    def netx_keys(self, time_steps: int) -> dict[str, Any]:
        """Common keys, ``inputLevels``, ``gain``, ``groups`` and ``table``."""
        return {**super().netx_keys(time_steps), "gain": self.gain, "groups": self.groups,
                "table": np.asarray(self.table, np.int64)}

    def validate(self, time_steps: int, where: str) -> None:
        """A positive, non-increasing table of 2 L_in + 1 entries whose sums stay below 2**62."""
        super().validate(time_steps, where)
        table = np.asarray(self.table)
        if table.shape != (2 * self.input_levels + 1,) or table[0] < 1 or (np.diff(table) > 0).any() \
                or table.min() < 0 or table[0] > 1 << 30:
            raise DeployError(f"{where}: the softmax table must hold 2 L_in + 1 = {2 * self.input_levels + 1} "
                              "non-increasing entries in 0..2^30, the first positive")
        if not 1 <= self.gain <= 1 << 16:
            raise DeployError(f"{where}: softmax gain {self.gain} outside 1..65536")


@register_neuron
@dataclass
class LayerNorm(FunctionUnit):
    """LayerNorm over the channels at every position, no affine part (``functions.layernorm_codes``).

    Attributes:
        gain: G, the code of one standard deviation.
        sqrt_bits: extra bits of the square root.
    """

    kind = "layernorm"
    netx_type = "LAYERNORM"
    work = "sums, an integer square root, integer divisions"
    #: sum, square, add square, deviation, multiply by G, divide, clip; a root (two steps per bit) per position
    operations_per_code = 7
    operations_per_position = 2 * 24
    gain: int = 1
    sqrt_bits: int = functions.SQRT_BITS
    own_scalars = {"gain": (1, 1 << 16), "sqrtBits": (0, 16)}

    def function(self, codes: np.ndarray) -> np.ndarray:
        """``functions.layernorm_codes``."""
        return functions.layernorm_codes(codes, self.gain, self.levels, self.sqrt_bits)

    def netx_keys(self, time_steps: int) -> dict[str, Any]:
        """Common keys, ``inputLevels``, ``gain`` and ``sqrtBits``."""
        return {**super().netx_keys(time_steps), "gain": self.gain, "sqrtBits": self.sqrt_bits}


@register_neuron
@dataclass
class Lookup(FunctionUnit):
    """An element-wise function as a table of its ``2 L_in + 1`` values (the MLP's GELU)."""

    kind = "lookup"
    netx_type = "LOOKUP"
    work = "a table lookup per code"
    table: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))

    @property
    def code_range(self) -> tuple[int, int]:
        """The table's smallest and largest entry."""
        return (int(np.min(self.table)), int(np.max(self.table)))

    def function(self, codes: np.ndarray) -> np.ndarray:
        """``functions.lookup_codes``."""
        return functions.lookup_codes(codes, self.table, self.input_levels)

    def netx_keys(self, time_steps: int) -> dict[str, Any]:
        """Common keys, ``inputLevels`` and ``table``."""
        return {**super().netx_keys(time_steps), "table": np.asarray(self.table, np.int64)}

    def validate(self, time_steps: int, where: str) -> None:
        """2 L_in + 1 entries, each a code in [-L, L]."""
        super().validate(time_steps, where)
        table = np.asarray(self.table)
        if table.shape != (2 * self.input_levels + 1,) or np.abs(table).max() > self.levels:
            raise DeployError(f"{where}: the lookup table must hold 2 L_in + 1 = {2 * self.input_levels + 1} "
                              f"codes in [-{self.levels}, {self.levels}]")
