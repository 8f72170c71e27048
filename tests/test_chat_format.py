"""The one chat format: exactly which tokens are supervised, the HF chat template, EOT/pad handling, trimming."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from lima_align.chat_format import (EOT, FORMAT_FILE, IGNORE, PAD_TOKEN, RUN_INFO, ChatFormat, add_special_tokens,
                                    chat_template, install_chat_template, load_chat_format, render,
                                    save_chat_format)

TURNS = ["What is 2+2?", "It is 4.", "And 3+3?", "6."]


@pytest.fixture(scope="module")
def tok():
    from lima_align.models import is_cached, load_tokenizer

    if not is_cached("smollm2-135m-instruct"):
        pytest.skip("built-in smollm2-135m-instruct is not materialised")
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    add_special_tokens(tokenizer, None)
    install_chat_template(tokenizer)
    return tokenizer


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_exactly_assistant_tokens_and_their_eot_are_supervised(tok):
    eot = tok.convert_tokens_to_ids("<|eot|>")
    segments = [_ids(tok, t) + [eot] for t in TURNS]
    rendered = render(TURNS, tok)
    assert rendered.input_ids == sum(segments, [])  # SmolLM2 adds no BOS
    expected = [IGNORE] * len(segments[0]) + segments[1] + [IGNORE] * len(segments[2]) + segments[3]
    assert rendered.labels == expected
    # named: the supervised tokens decode to the two answers, each closed by EOT; user EOTs are not supervised
    supervised = [t for t in rendered.labels if t != IGNORE]
    assert tok.decode(supervised) == "It is 4.<|eot|>6.<|eot|>"
    assert rendered.input_ids.count(eot) == 4 and supervised.count(eot) == 2


def test_train_on_all_supervises_everything(tok):
    rendered = render(TURNS, tok, ChatFormat(train_on="all"))
    assert rendered.labels == rendered.input_ids


def test_role_prefixes_are_in_the_template_and_unsupervised_for_users(tok):
    fmt = ChatFormat(user_prefix="User: ", assistant_prefix="Assistant: ")
    rendered = render(TURNS[:2], tok, fmt)
    assert tok.decode(rendered.input_ids) == "User: What is 2+2?<|eot|>Assistant: It is 4.<|eot|>"
    assert tok.decode([t for t in rendered.labels if t != IGNORE]) == "Assistant: It is 4.<|eot|>"


@pytest.mark.parametrize("fmt", [ChatFormat(), ChatFormat(user_prefix="### User\n", assistant_prefix="### Bot\n")])
def test_hf_chat_template_reproduces_training_and_prompt_ids(tok, fmt):
    tokenizer = copy.deepcopy(tok)
    install_chat_template(tokenizer, fmt)
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(TURNS)]
    hf_full = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    assert hf_full == render(TURNS, tokenizer, fmt).input_ids
    hf_prompt = tokenizer.apply_chat_template(messages[:3], tokenize=True, add_generation_prompt=True,
                                              return_dict=False)
    prompt = render(TURNS[:3], tokenizer, fmt, add_generation_prompt=True).input_ids
    assert hf_prompt == prompt
    assert render(TURNS, tokenizer, fmt).input_ids[:len(prompt)] == prompt


def test_gemma_template_with_bos():
    from lima_align.models import load_tokenizer

    tokenizer = load_tokenizer("gemma-3-270m")  # materialised once (under a lock) if the cache lacks it
    add_special_tokens(tokenizer, None)
    install_chat_template(tokenizer)
    rendered = render(TURNS, tokenizer)
    assert rendered.input_ids[0] == tokenizer.bos_token_id and rendered.labels[0] == IGNORE
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(TURNS)]
    assert tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False) == rendered.input_ids


def test_trim_cuts_the_end_of_the_last_assistant_turn_first(tok):
    long = ["Short question?", "word " * 400]
    full = render(long, tok, ChatFormat(max_len=None))
    trimmed = render(long, tok, ChatFormat(max_len=64))
    assert trimmed.trimmed and not full.trimmed and len(trimmed.input_ids) == 64
    assert trimmed.input_ids == full.input_ids[:64] and trimmed.labels == full.labels[:64]
    assert render(TURNS, tok, ChatFormat(max_len=64)).trimmed is False


def test_pad_is_never_eos_or_eot_and_new_rows_are_the_mean(base_tokenizer_copy):
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = base_tokenizer_copy
    assert tokenizer.pad_token == tokenizer.eos_token  # SmolLM2 pads with EOS: the known trap
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, vocab_size=len(tokenizer),
                                         tie_word_embeddings=False))
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    added = add_special_tokens(tokenizer, model)
    assert len(added) == 2 and tokenizer.pad_token == PAD_TOKEN
    assert tokenizer.pad_token_id not in (tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|eot|>"))
    new_in = model.get_input_embeddings().weight
    new_out = model.get_output_embeddings().weight
    assert new_in.shape[0] == len(tokenizer)
    torch.testing.assert_close(new_in[added[0]], old_in.mean(0))
    torch.testing.assert_close(new_out[added[1]], old_out.mean(0))
    torch.testing.assert_close(new_in[:old_in.shape[0]], old_in)


@pytest.fixture
def base_tokenizer_copy():
    from lima_align.models import is_cached, load_tokenizer

    if not is_cached("smollm2-135m-instruct"):
        pytest.skip("built-in smollm2-135m-instruct is not materialised")
    return load_tokenizer("smollm2-135m-instruct")


def test_template_rejects_system_role(tok):
    with pytest.raises(Exception, match="user and assistant only"):
        tok.apply_chat_template([{"role": "system", "content": "x"}], tokenize=False)
    assert "<|eot|>" in chat_template(tok)
    assert EOT == "<|eot|>" == ChatFormat().eot


CUSTOM = ChatFormat(eot="<|end|>", user_prefix="User: ", assistant_prefix="Bot: ", train_on="all", max_len=384)


def test_format_saved_in_a_folder_reads_back_equal(tmp_path):
    path = save_chat_format(CUSTOM, tmp_path / "ckpt")
    assert path == tmp_path / "ckpt" / FORMAT_FILE
    assert json.loads(path.read_text()) == {"eot": "<|end|>", "user_prefix": "User: ", "assistant_prefix": "Bot: ",
                                            "train_on": "all", "max_len": 384}
    assert load_chat_format(tmp_path / "ckpt") == CUSTOM
    assert not list((tmp_path / "ckpt").glob(".*.tmp"))  # written atomically: no temporary file left


def test_a_checkpoint_of_an_earlier_version_loads_its_format_from_the_run_config(tmp_path):
    # before chat_format.json, the format's fields were flat keys of the run config in lima-run.json
    old = {"config": {"model": "m", "eot": "<|end|>", "user_prefix": "User: ", "assistant_prefix": "Bot: ",
                      "train_on": "all", "max_len": 384, "epochs": 15}, "data": {}, "versions": {}}
    (tmp_path / RUN_INFO).write_text(json.dumps(old))
    assert load_chat_format(tmp_path) == CUSTOM
    (tmp_path / RUN_INFO).write_text(json.dumps({"config": {"model": "m", "eot": "<|end|>"}}))
    assert load_chat_format(tmp_path) == ChatFormat(eot="<|end|>")  # keys it lacks are the defaults
    save_chat_format(ChatFormat(max_len=64), tmp_path)  # the saved format, when there is one, is what counts
    assert load_chat_format(tmp_path) == ChatFormat(max_len=64)


def test_no_saved_format_is_none_and_a_bad_one_is_an_error(tmp_path):
    from lima_align.config import ConfigError

    assert load_chat_format(tmp_path) is None  # a folder of a model not trained with lima-align
    assert load_chat_format("HuggingFaceTB/SmolLM2-135M") is None  # a hub id
    (tmp_path / FORMAT_FILE).write_text('{"eot": "<|end|>", "train_on": "everything"}')
    with pytest.raises(ConfigError, match="train_on must be 'assistant' or 'all', got 'everything'"):
        load_chat_format(tmp_path)
    (tmp_path / FORMAT_FILE).write_text('{"eot": "<|end|>", "trim": 5}')
    with pytest.raises(ConfigError, match=f"{FORMAT_FILE}: unknown key 'trim'"):
        load_chat_format(tmp_path)
    (tmp_path / FORMAT_FILE).write_text('{"eot": ')
    with pytest.raises(ConfigError, match="invalid JSON"):
        load_chat_format(tmp_path)


@pytest.mark.parametrize("kwargs, message", [
    ({"train_on": "everything"}, "train_on must be 'assistant' or 'all'"),
    ({"max_len": 4}, "max_len must be >= 8"),
    ({"eot": ""}, "eot must be a non-empty"),
])
def test_an_invalid_format_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ChatFormat(**kwargs)
