"""Residual dropout: p rises linearly 0 -> p_top with depth, on attention and MLP branches, train mode only."""

from __future__ import annotations

import pytest
import torch
import transformers as tf

from lima_align.train.dropout import add_residual_dropout, branch_modules, decoder_layers, layer_rates

SMALL = dict(vocab_size=64)


def _models():
    llama = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, **SMALL)
    return {
        "llama": lambda: tf.LlamaForCausalLM(tf.LlamaConfig(**llama)),
        "mistral": lambda: tf.MistralForCausalLM(tf.MistralConfig(**llama)),
        "qwen2": lambda: tf.Qwen2ForCausalLM(tf.Qwen2Config(**llama)),
        "gemma3": lambda: tf.Gemma3ForCausalLM(tf.Gemma3TextConfig(head_dim=8, **llama)),
        "gpt2": lambda: tf.GPT2LMHeadModel(tf.GPT2Config(n_embd=32, n_layer=4, n_head=4, resid_pdrop=0.0,
                                                         embd_pdrop=0.0, attn_pdrop=0.0, **SMALL)),
        "gpt_neox": lambda: tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(hidden_size=32, intermediate_size=64,
                                                                    num_hidden_layers=4, num_attention_heads=4,
                                                                    **SMALL)),
    }


def test_rates_rise_linearly():
    assert layer_rates(4, 0.3) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert layer_rates(1, 0.2) == [0.2]


@pytest.mark.parametrize("name", list(_models()))
def test_each_layer_drops_at_its_rate_in_training_only(name):
    torch.manual_seed(0)
    model = _models()[name]()
    handle = add_residual_dropout(model, 0.3)
    assert handle.rates == pytest.approx([0.0, 0.1, 0.2, 0.3])
    layers = decoder_layers(model)
    seen: dict[tuple[int, int], float] = {}

    def recorder(key):
        def hook(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            seen[key] = (out == 0).float().mean().item()
        return hook

    extra = []
    for i, layer in enumerate(layers):
        for j, module in enumerate(branch_modules(layer, model.config.model_type)):
            extra.append(module.register_forward_hook(recorder((i, j))))  # runs after the dropout hook
    ids = torch.randint(0, 64, (8, 64))
    model.train()
    model(ids)
    for (i, _), zero_share in seen.items():
        assert zero_share == pytest.approx(handle.rates[i], abs=0.03), (name, i)
    model.eval()
    with torch.no_grad():
        a, b = model(ids).logits, model(ids).logits
    assert torch.equal(a, b)
    assert max(seen.values()) < 0.01  # eval: nothing dropped
    handle.remove()
    for h in extra:
        h.remove()


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot find the decoder layers"):
        add_residual_dropout(torch.nn.Linear(2, 2), 0.1)
