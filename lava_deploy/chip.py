"""Loihi 2's fixed-point ranges and this project's supported ranges, in one place.

Every module that rounds, writes, reads, checks or simulates a network imports
these names, so that the file reader, the exporter, ``check`` and every backend
apply one rule. No Lava import: the core must not depend on a backend.
"""
from __future__ import annotations

#: Loihi's signed membrane-potential (and current) state: 24 bits.
STATE_BITS = 24
#: Largest magnitude a 24-bit signed state holds: potentials live in [-STATE_LIMIT, STATE_LIMIT - 1].
STATE_LIMIT = 1 << (STATE_BITS - 1)
#: Loihi synapse: an 8-bit mixed-sign weight mantissa whose lowest bit Lava's Dense drops,
#: so mantissas are even integers in [-256, 254].
WEIGHT_MANTISSA_BITS = 8
WEIGHT_MANTISSA_MIN = -256
WEIGHT_MANTISSA_MAX = 254
#: The chip's shared weight exponent (Davies et al. 2018).
WEIGHT_EXP_MIN_CHIP, WEIGHT_EXP_MAX_CHIP = -8, 7
#: What lava-deploy's files hold: ``weight = mantissa << exp`` with exp >= 0, so no bit is ever lost.
WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = 0, WEIGHT_EXP_MAX_CHIP
#: Largest graded-spike payload (Lava's ``num_message_bits``).
MESSAGE_BITS = 24
#: Distinct presynaptic sources one neurocore takes (first-generation Loihi's figure; Loihi 2's is unpublished).
INPUT_AXONS_PER_CORE = 4096
#: Time steps per sample T (bits per activation code) that conversion, files and backends support.
TIME_STEPS_MIN, TIME_STEPS_MAX = 1, 8
#: Bits of an input image code.
INPUT_BITS_MIN, INPUT_BITS_MAX = 1, 16
