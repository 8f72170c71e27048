"""Pre-flight checks fail clearly; LoRA keeps the EOT embedding trainable and trains."""

from __future__ import annotations

import copy

import pytest
import torch

from lima_align.chat_format import ChatFormat, add_special_tokens
from lima_align.conversation import Example
from lima_align.train.data import RenderedDataset
from lima_align.train.preflight import PreflightError, check_dataset, check_eot_trainable, check_prefix

from .conftest import small_config, tiny_llama


@pytest.fixture
def tok(tokenizer):
    add_special_tokens(tokenizer, None)
    return tokenizer


def test_missing_eot_in_labels_and_zero_supervised_are_errors(tok):
    eot = tok.convert_tokens_to_ids("<|eot|>")
    with pytest.raises(PreflightError, match="not in its labels"):
        check_dataset(RenderedDataset([{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}]), tok, ChatFormat())
    with pytest.raises(PreflightError, match="zero supervised tokens"):
        check_dataset(RenderedDataset([{"input_ids": [1, 2], "labels": [-100, -100]}]), tok, ChatFormat())
    check_dataset(RenderedDataset([{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}], trimmed=[True]), tok,
                  ChatFormat())  # a trimmed example may lose its final EOT
    check_dataset(RenderedDataset([{"input_ids": [1, eot], "labels": [-100, eot]}]), tok, ChatFormat())
    with pytest.raises(PreflightError, match="no EOT token"):
        check_dataset(RenderedDataset([]), tok, ChatFormat(eot="<|never-added|>"))


def test_boundary_merge_is_detected(tok):
    example = Example("x", ["Hi", "there"])
    check_prefix([example], tok, ChatFormat())
    # "Answer:" + "there" is rendered as two segments but "Answer:there" may tokenize differently as one string
    merging = ChatFormat(assistant_prefix="Answer")
    with pytest.raises(PreflightError, match="merge"):
        check_prefix([Example("y", ["Hi", "s are"])], tok, merging)


def test_frozen_eot_embedding_is_an_error(tok):
    model = tiny_llama(len(tok))
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(PreflightError, match="EOT embedding"):
        check_eot_trainable(model, tok, ChatFormat())


def test_lora_trains_adapters_and_the_eot_embedding(lima_path, base_tokenizer, tmp_path):
    from lima_align.train import train

    tokenizer = copy.deepcopy(base_tokenizer)
    model = tiny_llama(len(tokenizer))
    config = small_config(lima_path, tmp_path / "lora", max_examples=8, epochs=1, lr=1e-2,
                          lora=__import__("lima_align.train", fromlist=["LoraSettings"]).LoraSettings(
                              enabled=True, r=4, alpha=8))
    base_before = model.get_input_embeddings().weight.detach().clone()
    result = train(config, model=model, tokenizer=tokenizer, log=lambda s: None)
    last = result.checkpoints[-1]
    assert (last / "adapter_model.safetensors").is_file() and (last / "tokenizer.json").is_file()
    from safetensors.torch import load_file

    saved = load_file(str(last / "adapter_model.safetensors"))
    assert any("lora_A" in k for k in saved) and any("trainable_tokens" in k for k in saved)
    assert torch.equal(model.get_input_embeddings().weight.detach()[:100], base_before[:100])
