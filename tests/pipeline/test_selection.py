"""Checkpoint selection over real (tiny, random) checkpoint folders, judged by the scripted server."""

import json

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lima_align.chat_format import ChatFormat, add_special_tokens
from lima_align.evaluate.judge_config import JudgeConfig
from lima_align.evaluate.judging import JudgeSetup
from lima_align.generate.decoding import SamplingConfig
from lima_align.pipeline.selection import (SelectOptions, SelectSpec, best_checkpoint, checkpoints_in_window,
                                           parse_epochs, select_checkpoint)
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
        evaluation = SamplingConfig(max_new_tokens=6, seed=3)  # the paper's sampling, a short cap
        options = SelectSpec(epochs="5-10").options(evaluation, device="cpu")
        likert = select_checkpoint(run, dev, setup, options, tmp_path / "sel")
        robin = select_checkpoint(run, dev, setup, SelectOptions(epochs=(5, 10), method="pairwise",
                                                                 sampling=evaluation, device="cpu"), tmp_path / "sel")
    assert set(likert["scores"]) == {"epoch-5", "epoch-6"}
    # the dev answers were decoded exactly like the evaluation's answers (sampled, not greedy)
    for name in ("epoch-5", "epoch-6"):
        rows = [json.loads(x) for x in (tmp_path / "sel" / f"{name}.outputs.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and all(r["sampling"]["temperature"] == 0.7 and r["sampling"]["top_p"] == 0.9
                                      and r["sampling"]["max_new_tokens"] == 6 for r in rows)
    # the best mean of the recorded Likert grades wins (recomputed here from the judgments files)
    means = {}
    for name in ("epoch-5", "epoch-6"):
        grades = [json.loads(x)["verdict"] for x in (tmp_path / "sel" / f"{name}.likert.jsonl").read_text().splitlines()]
        means[name] = sum(grades) / len(grades)
    assert likert["scores"]["epoch-5"]["score"] == means["epoch-5"]
    expected = "epoch-6" if means["epoch-6"] > means["epoch-5"] else "epoch-5"  # a tie goes to epoch 5
    assert likert["best"] == expected
    assert likert["checkpoint"].endswith({"epoch-5": "checkpoint-20", "epoch-6": "checkpoint-30"}[expected])
    assert set(robin["scores"]) == {"epoch-5", "epoch-6"}
    assert sum(s["score"] for s in robin["scores"].values()) == 2  # 2 dev prompts, one point each
    assert json.loads((tmp_path / "sel" / "select.json").read_text())["method"] == "pairwise"


def test_best_mean_wins_and_ties_go_to_the_earlier_checkpoint():
    order = ["epoch-5", "epoch-6", "epoch-7"]
    assert best_checkpoint(order, {"epoch-5": {"score": 3.0}, "epoch-6": {"score": 4.5},
                                   "epoch-7": {"score": 4.0}}) == "epoch-6"
    assert best_checkpoint(order, {"epoch-5": {"score": 2.0}, "epoch-6": {"score": 4.0},
                                   "epoch-7": {"score": 4.0}}) == "epoch-6"  # tie: the earlier of the two
    assert best_checkpoint(order, {"epoch-5": {"score": float("-inf")}, "epoch-6": {"score": float("-inf")},
                                   "epoch-7": {"score": 1.0}}) == "epoch-7"  # no parsed grade loses


def test_dev_answers_are_decoded_like_the_evaluation_unless_greedy_is_asked():
    evaluation = SamplingConfig(temperature=0.7, top_p=0.9, repetition_penalty=1.2, max_new_tokens=2048, seed=5)
    assert SelectSpec().options(evaluation).sampling == evaluation
    greedy = SelectSpec(greedy=True).options(evaluation).sampling
    assert greedy.temperature == 0.0 and greedy.max_new_tokens == 2048 and greedy.repetition_penalty == 1.2
    capped = SelectSpec(max_new_tokens=512).options(evaluation).sampling
    assert capped.max_new_tokens == 512 and capped.temperature == 0.7
