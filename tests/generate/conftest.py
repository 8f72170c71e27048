"""A tiny random Llama with the SmolLM2 tokenizer (plus EOT and pad): fast, real tokenizer, real cache code."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lima_align.chat_format import ChatFormat, add_special_tokens
from lima_align.models import load_tokenizer


def tiny_model(vocab: int, context: int = 256) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tokenizer():
    tok = load_tokenizer("smollm2-135m-instruct")
    add_special_tokens(tok, None, ChatFormat())
    return tok


@pytest.fixture()
def model(tokenizer):
    return tiny_model(len(tokenizer))


@pytest.fixture()
def make_model(tokenizer):
    """Build a tiny model with this context length."""
    return lambda context=256: tiny_model(len(tokenizer), context)
