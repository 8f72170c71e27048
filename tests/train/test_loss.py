"""The chunked loss equals transformers' loss; packing equals padding; 1x32 and 4x8 accumulation agree."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainerCallback

from lima_align.chat_format import ChatFormat, add_special_tokens
from lima_align.train.collate import PaddedCollator, make_collator, padding_share
from lima_align.train.data import load_examples, render_dataset
from lima_align.train.loss import lm_loss_sum

from .conftest import small_config, tiny_llama


@pytest.fixture
def rendered(lima_path, tokenizer):
    add_special_tokens(tokenizer, None)
    examples, _ = load_examples(str(lima_path), max_examples=6, max_chars=800)
    dataset, _ = render_dataset(examples, tokenizer, ChatFormat(max_len=128))
    return dataset, tokenizer


def test_chunked_loss_matches_transformers_loss(rendered):
    dataset, tokenizer = rendered
    model = tiny_llama(len(tokenizer))
    batch = PaddedCollator(tokenizer.pad_token_id)(dataset.items)
    reference = model(**batch).loss  # HF: mean over supervised next tokens
    for chunk in (0, 7, 4096):
        total, n = lm_loss_sum(model, batch, chunk)
        torch.testing.assert_close(total / n, reference, rtol=1e-5, atol=1e-5)


def test_packed_loss_and_grads_equal_padded(rendered):
    dataset, tokenizer = rendered
    model = tiny_llama(len(tokenizer))
    padded = PaddedCollator(tokenizer.pad_token_id)(dataset.items)
    packed = make_collator(True, tokenizer.pad_token_id)(dataset.items)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    losses, grads = [], []
    for batch in (padded, packed):
        model.zero_grad()
        total, n = lm_loss_sum(model, batch, 16)
        (total / n).backward()
        losses.append(total / n)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)
    assert padding_share(dataset.lengths(), 6) > 0.0


class _GradGrab(TrainerCallback):
    def __init__(self, model):
        self.model, self.grads = model, None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self.grads is None:
            self.grads = torch.cat([p.grad.flatten().clone() for p in self.model.parameters()])


@pytest.mark.parametrize("batching", ["packed", "rebalance", "padded"])
def test_accumulation_1x32_equals_4x8(lima_path, base_tokenizer, tmp_path, batching):
    import copy

    from lima_align.train.run import prepare
    from lima_align.train.trainer import build_trainer

    grads = []
    for micro in (32, 8):
        config = small_config(lima_path, tmp_path / f"m{micro}", max_examples=32, chat=ChatFormat(max_len=64),
                              epochs=1, batch_size=32, micro_batch_size=micro, residual_dropout=0.0,
                              batching=batching, max_grad_norm=1e9)
        tok = copy.deepcopy(base_tokenizer)
        prepared = prepare(config, tiny_llama(len(tok)), tok)
        grab = _GradGrab(prepared.model)
        trainer = build_trainer(config, prepared.model, prepared.tokenizer, prepared.dataset, {}, [grab])
        trainer.args.save_strategy = "no"
        trainer.train()
        grads.append(grab.grads)
    assert trainer.args.gradient_accumulation_steps == 4
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)
