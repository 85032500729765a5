"""A Hugging Face BERT-family or ViT classifier, written once as a sequence of sites that an ``Ops`` runs.

The forward pass names every place where the spiking form differs from the
ANN: ``neuron`` (an activation becomes spikes), ``linear`` (a synapse),
``product`` (a product of two activations: attention's Q K^T and P V), and the
non-linear functions ``gelu``, ``softmax`` and ``layernorm``. An ``Ops`` object
decides what each site does: :class:`~lava_deploy.transformers.ops.AnnOps`
computes the ANN (and calibrates), the spiking methods in
:mod:`lava_deploy.transformers.spiking` run one time step. One forward, three uses.

The embedding layer (token, position and type embeddings and their LayerNorm;
a ViT's patch projection, class token and positions) is the input encoding:
its output enters the first layer as an analog current at every step, as
images enter converted CNNs. The classification layer keeps analog input.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F

from lava_deploy.errors import DeployError

#: The non-linear functions' elementwise pieces, exact (the spatio-temporal method fits groups of neurons to them).
PIECES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": lambda x: F.gelu(x),
    "exp": torch.exp,
    "reciprocal": torch.reciprocal,
    "square": torch.square,
    "rsqrt": torch.rsqrt,
}
Piece = Callable[[str, torch.Tensor], torch.Tensor]


def exact_piece(name: str, x: torch.Tensor) -> torch.Tensor:
    """The exact elementwise function ``name``."""
    return PIECES[name](x)


def softmax_parts(z: torch.Tensor, key_valid: torch.Tensor, piece: Piece = exact_piece) -> torch.Tensor:
    """Softmax over the last axis from its pieces: exp of the shifted scores, reciprocal of their sum, a product.

    ``key_valid`` (broadcast to ``z``) excludes padded keys: they get probability 0.
    """
    top = z.masked_fill(~key_valid, float("-inf")).amax(-1, keepdim=True).clamp(min=-1e30)
    e = piece("exp", torch.where(key_valid, z - top, torch.zeros_like(z))) * key_valid
    return e * piece("reciprocal", e.sum(-1, keepdim=True).clamp(min=1e-30))


def layernorm_parts(x: torch.Tensor, norm: nn.LayerNorm, piece: Piece = exact_piece) -> torch.Tensor:
    """LayerNorm over the last axis from its pieces: centring, square, mean, rsqrt, a product, the affine map."""
    centred = x - x.mean(-1, keepdim=True)
    scale = piece("rsqrt", piece("square", centred).mean(-1, keepdim=True) + norm.eps)
    return centred * scale * norm.weight + norm.bias


class Ops(ABC):
    """What the forward pass calls at each site; subclasses define the ANN and each spiking method.

    ``valid`` arguments are boolean masks (broadcast to the tensor) of the
    entries that belong to real tokens: operation counts and calibration skip padding.
    """

    @abstractmethod
    def neuron(self, site: str, x: torch.Tensor, valid: torch.Tensor, channel_dims: tuple[int, ...]) -> torch.Tensor:
        """An activation becomes spikes; ``channel_dims`` index the neurons that own a threshold each."""

    @abstractmethod
    def linear(self, site: str, x: torch.Tensor, layer: nn.Linear, valid: torch.Tensor) -> torch.Tensor:
        """A synapse: ``layer(x)``."""

    @abstractmethod
    def product(self, site: str, a: torch.Tensor, b: torch.Tensor, valid_a: torch.Tensor,
                valid_b: torch.Tensor) -> torch.Tensor:
        """The product of two activations, ``a @ b`` (batched matrices)."""

    @abstractmethod
    def function(self, site: str, kind: str, x: torch.Tensor, valid: torch.Tensor,
                 apply: Callable[[torch.Tensor, Piece], torch.Tensor]) -> torch.Tensor:
        """A non-linear function of ``kind`` (gelu, softmax, layernorm): ``apply(x, piece)``."""


@dataclass
class Batch:
    """One batch of inputs: token ids (BERT) or images (ViT), and which tokens are real."""

    inputs: dict[str, torch.Tensor]
    token_valid: torch.Tensor       # (B, L) bool, after the embedding (a ViT's class token included)


class TransformerClassifier(nn.Module):
    """A BERT-family encoder with a mean-pooled linear head, or a ViT with its class-token head.

    Args:
        encoder: ``transformers.BertModel`` (or a BERT-family model with the same layout) or ``ViTModel``.
        head: the classification layer, reading the pooled final hidden state.
        pooling: ``mean`` over real tokens or ``cls`` (the first token).
    """

    def __init__(self, encoder: nn.Module, head: nn.Linear, pooling: str = "mean") -> None:
        super().__init__()
        self.encoder, self.head, self.pooling = encoder, head, pooling
        layers = getattr(getattr(encoder, "encoder", None), "layer", None)
        if layers is None or pooling not in ("mean", "cls"):
            raise DeployError(f"not a BERT-family or ViT encoder with mean or cls pooling: {type(encoder).__name__}")
        first = layers[0]
        if hasattr(first, "layernorm_before"):
            self.family = "vit"
        elif hasattr(first.attention, "self") and hasattr(first.output, "LayerNorm"):
            self.family = "bert"
        else:
            raise DeployError(f"{type(encoder).__name__}: layers are neither BERT's (post-LN) nor ViT's (pre-LN)")
        act = getattr(encoder.config, "hidden_act", "gelu")
        if act != "gelu":
            raise DeployError(f"{type(encoder).__name__}: activation '{act}' (only erf GELU is converted)")
        self.layers = layers
        self.heads = encoder.config.num_attention_heads

    @classmethod
    def from_pretrained(cls, model: nn.Module, head: Optional[nn.Linear] = None) -> "TransformerClassifier":
        """From ``ViTForImageClassification`` (its classifier, class token), or an encoder and a head (mean pooling)."""
        if head is None:
            if not (hasattr(model, "vit") and isinstance(getattr(model, "classifier", None), nn.Linear)):
                raise DeployError(f"{type(model).__name__}: give the classification head (only "
                                  "ViTForImageClassification brings its own)")
            return cls(model.vit, model.classifier, "cls")
        return cls(model, head, "mean")

    def truncated(self, blocks: int) -> "TransformerClassifier":
        """The same classifier (shared modules) with only its first ``blocks`` encoder blocks."""
        if not 1 <= blocks <= len(self.layers):
            raise DeployError(f"the encoder has {len(self.layers)} blocks, not {blocks}")
        short = TransformerClassifier(self.encoder, self.head, self.pooling)
        short.layers = nn.ModuleList(list(self.layers)[:blocks])
        return short

    def embed(self, batch: Batch) -> torch.Tensor:
        """The input encoding: the embedding layer's output (B, L, hidden)."""
        if self.family == "vit":
            return self.encoder.embeddings(batch.inputs["pixel_values"])
        return self.encoder.embeddings(input_ids=batch.inputs["input_ids"],
                                       token_type_ids=batch.inputs.get("token_type_ids"))

    def hidden(self, ops: Ops, x: torch.Tensor, token_valid: torch.Tensor) -> torch.Tensor:
        """The encoder's final hidden state from the embedding output ``x``, every site through ``ops``."""
        tok = token_valid[:, :, None]
        key = token_valid[:, None, None, :]
        row = token_valid[:, None, :, None]
        for i, layer in enumerate(self.layers):
            if self.family == "bert":
                spikes = ops.neuron(f"{i}.input", x, tok, (-1,))
                attn, self_out = layer.attention.self, layer.attention.output
                h = ops.linear(f"{i}.attention.output", self._attention(ops, i, spikes, attn, tok, key, row),
                               self_out.dense, tok) + spikes
                x1 = ops.function(f"{i}.layernorm1", "layernorm", h, tok,
                                  lambda v, p, n=self_out.LayerNorm: layernorm_parts(v, n, p))
                x1 = ops.neuron(f"{i}.layernorm1", x1, tok, (-1,))
                o = ops.linear(f"{i}.fc2", self._mlp(ops, i, x1, layer, tok), layer.output.dense, tok) + x1
                x = ops.function(f"{i}.layernorm2", "layernorm", o, tok,
                                 lambda v, p, n=layer.output.LayerNorm: layernorm_parts(v, n, p))
            else:
                n1 = ops.function(f"{i}.layernorm1", "layernorm", x, tok,
                                  lambda v, p, n=layer.layernorm_before: layernorm_parts(v, n, p))
                n1 = ops.neuron(f"{i}.layernorm1", n1, tok, (-1,))
                x = x + ops.linear(f"{i}.attention.output",
                                   self._attention(ops, i, n1, layer.attention.attention, tok, key, row),
                                   layer.attention.output.dense, tok)
                n2 = ops.function(f"{i}.layernorm2", "layernorm", x, tok,
                                  lambda v, p, n=layer.layernorm_after: layernorm_parts(v, n, p))
                n2 = ops.neuron(f"{i}.layernorm2", n2, tok, (-1,))
                x = x + ops.linear(f"{i}.fc2", self._mlp(ops, i, n2, layer, tok), layer.output.dense, tok)
        if self.family == "vit":
            x = ops.function("final.layernorm", "layernorm", x, tok,
                             lambda v, p, n=self.encoder.layernorm: layernorm_parts(v, n, p))
        return x

    def _attention(self, ops: Ops, i: int, x: torch.Tensor, attn: nn.Module, tok: torch.Tensor,
                   key: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention on spikes ``x``: Q, K, V neurons, two spike products, softmax in between."""
        b, length, width = x.shape
        d = width // self.heads

        def split(name: str, layer: nn.Linear) -> torch.Tensor:
            v = ops.neuron(f"{i}.{name}", ops.linear(f"{i}.{name}", x, layer, tok), tok, (-1,))
            return v.view(b, length, self.heads, d).transpose(1, 2)        # (B, heads, L, d)

        q, k, v = split("query", attn.query), split("key", attn.key), split("value", attn.value)
        scores = ops.product(f"{i}.scores", q, k.transpose(-1, -2), row, key)
        scale = d ** -0.5
        probs = ops.function(f"{i}.softmax", "softmax", scores, row & key,
                             lambda s, p: softmax_parts(s * scale, key, p))
        probs = ops.neuron(f"{i}.softmax", probs, row & key, (1,))     # one threshold per head
        context = ops.product(f"{i}.context", probs, v, row & key, row)
        context = context.transpose(1, 2).reshape(b, length, width)
        return ops.neuron(f"{i}.context", context, tok, (-1,))

    def _mlp(self, ops: Ops, i: int, x: torch.Tensor, layer: nn.Module, tok: torch.Tensor) -> torch.Tensor:
        """fc1, GELU and its neurons; fc2 is the caller's."""
        u = ops.linear(f"{i}.fc1", x, layer.intermediate.dense, tok)
        g = ops.function(f"{i}.gelu", "gelu", u, tok, lambda v, p: p("gelu", v))
        return ops.neuron(f"{i}.gelu", g, tok, (-1,))

    def pool(self, x: torch.Tensor, token_valid: torch.Tensor) -> torch.Tensor:
        """The head's input: mean over real tokens, or the class token."""
        if self.pooling == "cls":
            return x[:, 0]
        mask = token_valid[:, :, None].to(x.dtype)
        return (x * mask).sum(1) / mask.sum(1).clamp(min=1)

    def logits(self, ops: Ops, batch: Batch) -> torch.Tensor:
        """The classifier's logits with every site through ``ops`` (the ANN's with :class:`AnnOps`)."""
        x = self.embed(batch)
        return self.head(self.pool(self.hidden(ops, x, batch.token_valid), batch.token_valid))


def text_batch(tokens: dict[str, torch.Tensor]) -> Batch:
    """A :class:`Batch` of tokenized text (``input_ids``, ``attention_mask``, optional ``token_type_ids``)."""
    inputs = {k: v for k, v in tokens.items() if k in ("input_ids", "token_type_ids")}
    return Batch(inputs, tokens["attention_mask"].bool())


def image_batch(pixel_values: torch.Tensor, tokens: int) -> Batch:
    """A :class:`Batch` of images for a ViT whose sequence (class token and patches) has ``tokens`` entries."""
    return Batch({"pixel_values": pixel_values}, torch.ones(len(pixel_values), tokens, dtype=torch.bool))
