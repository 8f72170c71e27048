"""Residual dropout (LIMA / InstructGPT): dropout on each residual branch, rising linearly with depth.

Layer ``i`` of ``L`` drops the output of its attention branch and of its MLP branch, just before each is added to
the residual stream, with ``p_i = p_top * i / (L - 1)`` (0 at the bottom layer, ``p_top`` at the top; the paper
uses 0.3, and 0.2 for smaller models). Implemented with forward hooks, so any HF decoder-only architecture works
without touching its code; the hooks only drop in training mode (``module.training``), so eval is deterministic.

Which module's output is "the branch" depends on the architecture: usually the attention and MLP modules
themselves (Llama, Mistral, Qwen2, GPT-2, GPT-NeoX); Gemma 2/3 normalise each branch again after it
("sandwich" norms), so there the branch ends at ``post_attention_layernorm`` / ``post_feedforward_layernorm``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import nn

# model_type -> (attention-branch module, mlp-branch module) inside a decoder layer
_BRANCHES: dict[str, tuple[str, str]] = {
    "gemma2": ("post_attention_layernorm", "post_feedforward_layernorm"),
    "gemma3": ("post_attention_layernorm", "post_feedforward_layernorm"),
    "gemma3_text": ("post_attention_layernorm", "post_feedforward_layernorm"),
}
_ATTENTION_NAMES = ("self_attn", "attn", "attention", "self_attention")
_MLP_NAMES = ("mlp", "feed_forward", "ffn")
_LAYER_LISTS = ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers", "model.language_model.layers")


@dataclass
class ResidualDropout:
    """Handle to installed hooks: per-layer rates, and ``remove()`` to uninstall them."""

    rates: list[float]
    handles: list[Any]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def layer_rates(n_layers: int, p_top: float) -> list[float]:
    """p for each layer: linear from 0.0 (bottom) to ``p_top`` (top)."""
    if n_layers == 1:
        return [p_top]
    return [p_top * i / (n_layers - 1) for i in range(n_layers)]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks of a HF causal LM (also through a peft wrapper)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for dotted in _LAYER_LISTS:
        node: Any = base
        for part in dotted.split("."):
            node = getattr(node, part, None)
            if node is None:
                break
        if isinstance(node, nn.ModuleList):
            return node
    raise ValueError(f"residual dropout: cannot find the decoder layers of {type(base).__name__}")


def branch_modules(layer: nn.Module, model_type: str) -> tuple[nn.Module, nn.Module]:
    """The two modules whose outputs are added to the residual stream in this layer."""
    if model_type in _BRANCHES:
        names = [(_BRANCHES[model_type][0],), (_BRANCHES[model_type][1],)]
    else:
        names = [_ATTENTION_NAMES, _MLP_NAMES]
    found = []
    for candidates in names:
        module = next((getattr(layer, n) for n in candidates if isinstance(getattr(layer, n, None), nn.Module)),
                      None)
        if module is None:
            raise ValueError(f"residual dropout: no {'/'.join(candidates)} module in {type(layer).__name__}")
        found.append(module)
    return found[0], found[1]


def add_residual_dropout(model: nn.Module, p_top: float) -> ResidualDropout:
    """Install residual dropout on every decoder layer of ``model``; returns the handle (rates per layer)."""
    layers = decoder_layers(model)
    rates = layer_rates(len(layers), p_top)
    handles = []
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    for layer, p in zip(layers, rates):
        if p <= 0.0:
            continue
        for module in branch_modules(layer, model_type):
            handles.append(module.register_forward_hook(_dropout_hook(p)))
    return ResidualDropout(rates, handles)


def _dropout_hook(p: float):
    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        if not module.training:
            return None
        if isinstance(output, tuple):  # attention modules return (hidden, weights, ...)
            return (F.dropout(output[0], p, training=True),) + tuple(output[1:])
        return F.dropout(output, p, training=True)

    return hook
