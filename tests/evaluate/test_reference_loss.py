"""Reference loss: the mean NLL of a reference answer's tokens (EOT included) in the model's own chat format."""

from __future__ import annotations

import math

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lima_align.chat_format import ChatFormat, add_special_tokens, render
from lima_align.evaluate.reference_loss import reference_losses, summarize_losses
from lima_align.models import load_tokenizer

FMT = ChatFormat()  # no role prefixes: the supervised tokens are exactly the answer and its EOT
REFS = [["What is 2+2?", "It is 4."], ["Name a colour.", "Blue, like the sky on a clear day."]]


def _model_and_tokenizer():
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    add_special_tokens(tokenizer, None, FMT)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    return model, tokenizer


def test_loss_is_the_mean_nll_of_the_answer_tokens_and_its_eot():
    model, tokenizer = _model_and_tokenizer()
    (first, second) = reference_losses(model, tokenizer, FMT, REFS)
    rendered = render(REFS[0], tokenizer, FMT)
    answer_ids = tokenizer("It is 4.", add_special_tokens=False)["input_ids"]
    assert first["tokens"] == len(answer_ids) + 1  # the answer and its EOT; the prompt is not scored
    # the same number from transformers' own loss over the same labels
    with torch.no_grad():
        hf = model(input_ids=torch.tensor([rendered.input_ids]), labels=torch.tensor([rendered.labels])).loss
    assert math.isclose(first["loss"], float(hf), rel_tol=1e-5)
    assert second["tokens"] > first["tokens"] and second["loss"] != first["loss"]


def test_a_model_that_predicts_the_reference_scores_lower():
    model, tokenizer = _model_and_tokenizer()
    before = summarize_losses(reference_losses(model, tokenizer, FMT, REFS[:1]))["mean_loss"]
    rendered = render(REFS[0], tokenizer, FMT)
    batch = {"input_ids": torch.tensor([rendered.input_ids]), "labels": torch.tensor([rendered.labels])}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(30):  # memorise the one reference
        opt.zero_grad()
        model.train()
        model(**batch).loss.backward()
        opt.step()
    after = summarize_losses(reference_losses(model, tokenizer, FMT, REFS[:1]))["mean_loss"]
    assert after < before / 4


def test_summary_hand_values():
    losses = [{"tokens": 2, "loss": 1.0}, {"tokens": 6, "loss": 3.0}, {"tokens": 2, "loss": 2.0}]
    s = summarize_losses(losses)
    # mean 2.0, sd 1.0, t_{0.975, 2} = 4.302653: half width 4.302653 / sqrt(3) = 2.484138
    assert s["mean_loss"] == 2.0 and s["references"] == 3 and s["tokens"] == 10
    assert math.isclose(s["ci"][0], 2.0 - 2.484138, abs_tol=1e-5) and math.isclose(s["ci"][1], 4.484138, abs_tol=1e-5)
    assert math.isclose(s["token_weighted_loss"], (2 + 18 + 4) / 10)
