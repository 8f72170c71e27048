"""The chat format a run trains with is saved beside every checkpoint and is what generation and the local judge
use afterwards (a custom EOT and role prefixes, so the default format could not pass for it)."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

from lima_align.chat_format import FORMAT_FILE, ChatFormat, load_chat_format
from lima_align.generate.engine import HFEngine
from lima_align.generate.loading import load_for_generation
from lima_align.train import train
from lima_align.train.checkpoint import MARKER

from .conftest import small_config, tiny_llama

CUSTOM = ChatFormat(eot="<|end|>", user_prefix="### User\n", assistant_prefix="### Bot\n", train_on="all",
                    max_len=80)


def test_checkpoints_carry_the_trained_format_and_generation_renders_with_it(lima_path, base_tokenizer, tmp_path):
    tokenizer = copy.deepcopy(base_tokenizer)
    config = small_config(lima_path, tmp_path / "run", max_examples=4, max_chars=260, epochs=2, batch_size=4,
                          micro_batch_size=4, residual_dropout=0.0, chat=CUSTOM, keep_epochs="all")
    result = train(config, model=tiny_llama(len(tokenizer)), tokenizer=tokenizer, log=lambda s: None)

    assert [c.name for c in result.checkpoints] == ["checkpoint-1", "checkpoint-2"]
    for folder in result.checkpoints:
        assert json.loads((folder / FORMAT_FILE).read_text())["eot"] == "<|end|>"
        assert load_chat_format(folder) == CUSTOM

    model, loaded_tok, fmt = load_for_generation(str(result.checkpoints[-1]), device="cpu")
    assert fmt == CUSTOM and "<|eot|>" not in loaded_tok.get_vocab()
    engine = HFEngine(model, loaded_tok, fmt)
    assert engine.eot_id == loaded_tok.convert_tokens_to_ids("<|end|>") and engine.eot_id in engine.stop_ids
    assert loaded_tok.decode(engine.prompt_ids(["Hi"])) == "### User\nHi<|end|>### Bot\n"

    from lima_align.evaluate.local import LocalJudge

    # a judge speaks the model's own chat template: for a lima-align checkpoint that is the saved format's
    judge = LocalJudge.load(str(result.checkpoints[-1]), device="cpu")
    assert "<|eot|>" not in judge.tokenizer.get_vocab()  # no token added to a judge
    assert judge.tokenizer.decode(judge.prompt_ids([{"role": "user", "content": "Hi"}])) == "### User\nHi<|end|>### Bot\n"


def test_the_format_is_written_before_the_completion_marker(tmp_path, monkeypatch):
    from lima_align.train import checkpoint

    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    marker_seen, save = [], checkpoint.save_chat_format
    monkeypatch.setattr(checkpoint, "save_chat_format",
                        lambda fmt, where: marker_seen.append((folder / MARKER).exists()) or save(fmt, where))
    callback = checkpoint.CheckpointCallback({"config": {}}, CUSTOM)
    callback.on_save(SimpleNamespace(output_dir=str(tmp_path)),
                     SimpleNamespace(is_world_process_zero=True, global_step=3, epoch=1.0), None)
    assert marker_seen == [False] and (folder / MARKER).is_file()  # a complete checkpoint always has its format
    assert load_chat_format(folder) == CUSTOM


def test_a_model_saved_by_the_trainer_gets_the_format_too(lima_path, base_tokenizer, tmp_path):
    from lima_align.train.run import prepare
    from lima_align.train.trainer import build_trainer

    fmt = ChatFormat(eot="<|stop|>", max_len=64)
    config = small_config(lima_path, tmp_path / "run", max_examples=2, chat=fmt)
    tokenizer = copy.deepcopy(base_tokenizer)
    prepared = prepare(config, tiny_llama(len(tokenizer)), tokenizer)
    trainer = build_trainer(config, prepared.model, prepared.tokenizer, prepared.dataset, {})
    trainer.save_model(str(tmp_path / "final"))
    assert (tmp_path / "final" / "model.safetensors").is_file()
    assert load_chat_format(tmp_path / "final") == fmt
