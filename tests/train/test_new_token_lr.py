"""``new_token_lr``: the added tokens' embedding rows learn at their own rate, every other weight as before; a LoRA
checkpoint loads as a merged model wherever a model name is taken."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file

from lima_align.chat_format import eot_token_id
from lima_align.errors import LimaError
from lima_align.train import LoraSettings, train

from .conftest import small_config, tiny_llama


def _one_step(lima_path, base_tokenizer, out, log=lambda s: None, **overrides):
    tokenizer = copy.deepcopy(base_tokenizer)
    config = small_config(lima_path, out, max_examples=8, epochs=1, batch_size=8, lr=1e-3, **overrides)
    result = train(config, model=tiny_llama(len(tokenizer), tied=True), tokenizer=tokenizer, log=log)
    assert result.global_step == 1
    return load_file(str(result.checkpoints[-1] / "model.safetensors")), eot_token_id(tokenizer)


def test_new_token_rows_move_k_times_as_far_and_nothing_else_changes(lima_path, base_tokenizer, tmp_path):
    from lima_align.chat_format import add_special_tokens

    tokenizer = copy.deepcopy(base_tokenizer)
    start = tiny_llama(len(tokenizer), tied=True)
    add_special_tokens(tokenizer, start)
    initial = start.get_input_embeddings().weight.detach()
    lines: list[str] = []
    plain, eot = _one_step(lima_path, base_tokenizer, tmp_path / "plain", log=lines.append)
    data_line = next(line for line in lines if line.startswith("data: "))
    assert "'longer than max_chars=600'" in data_line, data_line  # left out when read: counted, not "none"
    fast, _ = _one_step(lima_path, base_tokenizer, tmp_path / "fast", new_token_lr=1e-2)
    name = "model.embed_tokens.weight"
    assert set(plain) == set(fast)
    for key in plain:
        if key != name:
            assert torch.equal(plain[key], fast[key]), key
    moved_plain, moved_fast = plain[name][eot] - initial[eot], fast[name][eot] - initial[eot]
    assert moved_plain.abs().max() > 1e-5  # the EOT row learnt something in the plain run
    torch.testing.assert_close(moved_fast, 10 * moved_plain, rtol=1e-4, atol=1e-7)
    others = torch.ones(plain[name].shape[0], dtype=torch.bool)
    others[eot] = False
    others[tokenizer.pad_token_id] = False
    assert torch.equal(plain[name][others], fast[name][others])


def test_lora_checkpoint_loads_merged_and_its_token_rows_move_faster(lima_path, base_tokenizer, tmp_path,
                                                                     monkeypatch):
    from transformers import TrainerCallback

    from lima_align.models import load_model

    base_dir = tmp_path / "base"
    tiny_llama(len(base_tokenizer), tied=True).save_pretrained(base_dir)
    base_tokenizer.save_pretrained(base_dir)
    probe = torch.tensor([[1, 5, 9, 200, 7]])
    seen: dict[str, torch.Tensor] = {}

    class Capture(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            model.eval()
            with torch.no_grad():
                seen["logits"] = model(input_ids=probe).logits.detach().clone()

    lora = LoraSettings(enabled=True, r=4, alpha=8)
    runs = {}
    for label, rate in (("plain", None), ("fast", 3e-2)):
        config = small_config(lima_path, tmp_path / label, model=str(base_dir), max_examples=8, epochs=1,
                              lr=1e-2, lora=lora, new_token_lr=rate)
        result = train(config, callbacks=[Capture()], log=lambda s: None)
        runs[label] = result.checkpoints[-1]
    merged = load_model(runs["fast"]).eval()  # base from adapter_config.json, embeddings grown, adapter merged
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=probe).logits, seen["logits"], rtol=1e-4, atol=1e-5)
    deltas = {label: next(v for k, v in load_file(str(path / "adapter_model.safetensors")).items()
                          if "trainable_tokens" in k) for label, path in runs.items()}
    initial = load_model(str(base_dir)).get_input_embeddings().weight.detach().mean(dim=0)  # the mean init
    torch.testing.assert_close(deltas["fast"][0] - initial, 3 * (deltas["plain"][0] - initial), rtol=1e-3, atol=1e-6)

    # vLLM cannot read an adapter folder: the vLLM engine gets it materialised once as the merged model
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    from lima_align.generate.vllm_engine import vllm_folder

    monkeypatch.setenv("LIMA_ALIGN_CACHE", str(tmp_path / "cache"))
    folder, tokenizer, fmt = vllm_folder(str(runs["fast"]))
    assert Path(folder).parent == tmp_path / "cache" / "vllm" and fmt.eot in tokenizer.get_vocab()
    with torch.no_grad():
        logits = AutoModelForCausalLM.from_pretrained(folder).eval()(input_ids=probe).logits
    torch.testing.assert_close(logits, seen["logits"], rtol=1e-4, atol=1e-5)
    built = (Path(folder) / "model.safetensors").stat().st_mtime_ns
    assert vllm_folder(str(runs["fast"]))[0] == folder  # the second engine finds it built
    assert (Path(folder) / "model.safetensors").stat().st_mtime_ns == built
    with pytest.raises(LimaError, match="--add-eot"):  # the base model has no EOT
        vllm_folder(str(base_dir))


def test_sharded_strategies_refuse_new_token_lr(lima_path, tmp_path):
    from lima_align.train.sharding import check_supported

    config = small_config(lima_path, tmp_path, strategy="fsdp2", new_token_lr=1e-3)
    with pytest.raises(LimaError, match="new_token_lr works with strategy=ddp"):
        check_supported(config, tiny_llama(64), world_size=2)
    with pytest.raises(ValueError, match="new_token_lr must be > 0"):
        small_config(lima_path, tmp_path, new_token_lr=0.0)


def test_an_adapter_folder_without_a_base_is_a_clear_error(tmp_path):
    from lima_align.models import load_model

    (tmp_path / "adapter_config.json").write_text('{"base_model_name_or_path": ""}')
    with pytest.raises(LimaError, match="base_model_name_or_path is empty"):
        load_model(tmp_path)
    (tmp_path / "adapter_config.json").unlink()
    with pytest.raises(LimaError, match="no config.json, no adapter_config.json"):
        load_model(tmp_path)


def test_a_lora_checkpoint_exports_merged_or_as_an_adapter(lima_path, base_tokenizer, tmp_path):
    """``lima-align export`` of a LoRA run: merged (default) it is a plain model with the trained logits and a
    generation config stopping at EOT; with --adapter it is the adapter, its base named, loading to the same."""
    import json

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lima_align.export.release import ExportOptions, export_checkpoint

    base_dir = tmp_path / "base"
    tiny_llama(len(base_tokenizer), tied=True).save_pretrained(base_dir)
    base_tokenizer.save_pretrained(base_dir)
    config = small_config(lima_path, tmp_path / "run", model=str(base_dir), max_examples=8, epochs=1, lr=1e-2,
                          lora=LoraSettings(enabled=True, r=4, alpha=8))
    checkpoint = train(config, log=lambda s: None).checkpoints[-1]
    probe = torch.tensor([[1, 5, 9, 200, 7]])
    from lima_align.models import load_model

    with torch.no_grad():
        want = load_model(checkpoint).eval()(input_ids=probe).logits
    merged = export_checkpoint(tmp_path / "run", tmp_path / "merged", log=lambda s: None)
    assert not (merged / "adapter_config.json").exists()
    with torch.no_grad():
        got = AutoModelForCausalLM.from_pretrained(merged).eval()(input_ids=probe).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    tokenizer = AutoTokenizer.from_pretrained(merged)
    assert json.loads((merged / "generation_config.json").read_text())["eos_token_id"][0] == \
        tokenizer.convert_tokens_to_ids("<|eot|>")

    adapter = export_checkpoint(checkpoint, tmp_path / "adapter", ExportOptions(adapter=True), log=lambda s: None)
    assert not (adapter / "model.safetensors").exists()
    card = (adapter / "README.md").read_text()
    assert "library_name: peft" in card and f"base_model: {base_dir}" in card
    base = AutoModelForCausalLM.from_pretrained(json.loads((adapter / "adapter_config.json").read_text())
                                                ["base_model_name_or_path"])
    base.resize_token_embeddings(len(AutoTokenizer.from_pretrained(adapter)), mean_resizing=False)
    with torch.no_grad():
        again = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload().eval()(input_ids=probe).logits
    torch.testing.assert_close(again, want, rtol=1e-5, atol=1e-6)
