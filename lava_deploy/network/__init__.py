"""The integer spiking network: its graph, its node kinds, the one rule for what can run, its file format
and its exact integer reference. Below training, export, check and every backend; no Lava import.

A new synapse or neuron kind is one module here with a ``register_synapse`` / ``register_neuron``
class and one import line below (``docs/architecture.md``).
"""
from lava_deploy.network.graph import (BIT_SERIAL, ENCODINGS, INPUT, NEURON_KINDS, SYNAPSE_KINDS, Edge, Layer, Neuron,
                                       SpikingNetwork, Synapse, conv_output_size, encode_input_digits, headroom_bits,
                                       register_neuron, register_synapse)
from lava_deploy.network.conv import ConvSynapse         # registers 'conv'
from lava_deploy.network.dense import DenseSynapse       # registers 'dense'
from lava_deploy.network.neurons import AccumulateEmit, Readout      # register both neuron kinds
from lava_deploy.network.graded import GRADED, GradedEmit  # registers 'graded', the graded encoding's neuron
from lava_deploy.network.product import ProductSynapse   # registers 'product'
from lava_deploy.network.units import LayerNorm, Lookup, SignedEmit, Softmax    # register the Transformer's units
from lava_deploy.network.validate import validate_network

__all__ = ["BIT_SERIAL", "ENCODINGS", "GRADED", "INPUT", "NEURON_KINDS", "SYNAPSE_KINDS", "Edge", "Layer", "Neuron",
           "SpikingNetwork", "Synapse", "ConvSynapse", "DenseSynapse", "ProductSynapse", "AccumulateEmit",
           "GradedEmit", "Readout", "SignedEmit", "Softmax", "LayerNorm", "Lookup", "conv_output_size",
           "encode_input_digits", "headroom_bits", "register_neuron", "register_synapse", "validate_network"]
