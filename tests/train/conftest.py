"""Shared fixtures for the training tests: real LIMA data, a real (offline) tokenizer, tiny random models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
LIMA_FILE = "lima/lima_train_instruction_response.jsonl"


def shared_data_dir() -> Path:
    return Path(os.environ.get("LIMA_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def lima_path() -> Path:
    path = shared_data_dir() / LIMA_FILE
    if not path.is_file():
        pytest.skip(f"shared data absent: {path} (set LIMA_SHARED_DATA to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def base_tokenizer():
    """SmolLM2's tokenizer (byte-level BPE, pads with EOS: the hard case), built in and offline."""
    from lima_align.models import is_cached, load_tokenizer

    if not is_cached("smollm2-135m-instruct"):
        pytest.skip("built-in smollm2-135m-instruct is not materialised (run `lima-align models`)")
    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture
def tokenizer(base_tokenizer):
    import copy

    return copy.deepcopy(base_tokenizer)


def tiny_llama(vocab_size: int, seed: int = 0, layers: int = 2, tied: bool = False, hidden: int = 32):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=vocab_size,
                         max_position_embeddings=512, tie_word_embeddings=tied)
    return LlamaForCausalLM(config)


def small_config(lima_path: Path, out: Path, **overrides):
    from lima_align.chat_format import ChatFormat
    from lima_align.train import TrainConfig

    defaults = dict(model="tiny", data=str(lima_path), out=str(out), max_examples=16, max_chars=600,
                    chat=ChatFormat(max_len=96),
                    epochs=2, batch_size=8, micro_batch_size=4, lr=1e-3, lr_end=1e-4, tensorboard=False,
                    residual_dropout=0.1, logging_steps=1, mixed_precision="no")
    defaults.update(overrides)
    return TrainConfig(**defaults)
