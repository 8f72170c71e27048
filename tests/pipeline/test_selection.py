"""Checkpoint selection over real (tiny, random) checkpoint folders, judged by the scripted server."""

import json

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lima_align.chat_format import ChatFormat, add_special_tokens
from lima_align.evaluate.judge_config import JudgeConfig
from lima_align.evaluate.judging import JudgeSetup
from lima_align.pipeline.selection import SelectOptions, checkpoints_in_window, parse_epochs, select_checkpoint
from lima_align.evaluate.stub_server import stub_server
from lima_align.models import load_tokenizer

from evaluate.conftest import prefer_longer  # tests/evaluate: the scripted judge


def make_run(root, epochs):
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    add_special_tokens(tokenizer, None, ChatFormat())
    for step, epoch in enumerate(epochs, start=1):
        torch.manual_seed(step)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                             num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                             max_position_embeddings=128))
        folder = root / f"checkpoint-{step * 10}"
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / "lima-complete.json").write_text(json.dumps({"global_step": step * 10, "epoch": float(epoch)}))
    (root / "checkpoint-99").mkdir()  # incomplete (no marker): never considered


def test_select_by_likert_and_round_robin(tmp_path):
    run = tmp_path / "run"
    make_run(run, [4, 5, 6])
    assert parse_epochs("5-10") == (5, 10) and parse_epochs("7") == (7, 7)
    assert [e for e, _ in checkpoints_in_window(run, (5, 10))] == [5, 6]
    dev = tmp_path / "dev.jsonl"
    dev.write_text("".join(json.dumps({"id": f"d{i}", "prompt": f"Tell me about {w}."}) + "\n"
                           for i, w in enumerate(["cats", "rain"])))
    with stub_server(prefer_longer) as server:
        config = JudgeConfig(name="stub", model="stub", base_url=server.base_url, api_key_env="")
        setup = JudgeSetup(config, tmp_path / "cache.sqlite")
        options = SelectOptions(epochs=(5, 10), max_new_tokens=6, device="cpu")
        likert = select_checkpoint(run, dev, setup, options, tmp_path / "sel")
        robin = select_checkpoint(run, dev, setup, SelectOptions(epochs=(5, 10), method="pairwise",
                                                                 max_new_tokens=6, device="cpu"), tmp_path / "sel")
    assert set(likert["scores"]) == {"epoch-5", "epoch-6"} and likert["best"] in likert["scores"]
    assert likert["checkpoint"].endswith(("checkpoint-20", "checkpoint-30"))
    assert set(robin["scores"]) == {"epoch-5", "epoch-6"}
    assert sum(s["score"] for s in robin["scores"].values()) == 2  # 2 dev prompts, one point each
    assert json.loads((tmp_path / "sel" / "select.json").read_text())["method"] == "pairwise"
