"""Every protocol end to end against the real ``lima-align serve`` app with a small real model on 127.0.0.1
(smollm2-135m-instruct, tiny max_tokens): its verdicts are weak, the plumbing is real. The weighted mode reads
the server's logprobs, compared here with a direct forward pass. Plus the built-in local judge, both modes."""

import json

import pytest
import torch

from lima_align.evaluate.judge_config import JudgeConfig
from lima_align.evaluate.judging import JudgeSetup, judge_multiturn, judge_pairwise, judge_single, read_rows
from lima_align.evaluate.local import LocalJudge
from lima_align.evaluate.statistics import position_consistency
from lima_align.evaluate.templates import load_template
from lima_align.generate.engine import HFEngine
from lima_align.generate.loading import load_for_generation
from lima_align.generate.server import serve_in_thread

from .conftest import write_outputs

NAME = "smollm2-judge"


@pytest.fixture(scope="module")
def engine():
    model, tokenizer, fmt = load_for_generation("smollm2-135m-instruct", add_eot=True, device="cpu")
    return HFEngine(model, tokenizer, fmt, batch_size=8)


@pytest.fixture(scope="module")
def server(engine):
    with serve_in_thread(engine, served_name=NAME, window_s=0.02) as running:
        yield running


def _setup(server, tmp_path):
    config = JudgeConfig(name="serve", model=NAME, base_url=server.base_url, api_key_env="", max_tokens=12,
                         concurrency=4, max_retries=1, timeout_s=120)
    return JudgeSetup(config, tmp_path / "cache.sqlite")


def test_every_protocol_against_lima_align_serve(server, tmp_path):
    a = write_outputs(tmp_path / "a.jsonl", "m-a", ["Paris.", "4"], ["Capital of France?", "2+2?"])
    b = write_outputs(tmp_path / "b.jsonl", "m-b", ["Lyon.", "5"], ["Capital of France?", "2+2?"])
    convs = tmp_path / "c.jsonl"
    convs.write_text(json.dumps({"id": "c", "conversations": ["Hi", "Hello!", "Bye", "Bye!"]}) + "\n")
    setup = _setup(server, tmp_path)
    report, pairing = judge_pairwise(setup, a, b, tmp_path / "pw.jsonl")
    assert pairing["paired"] == 2 and report.written == 2
    for protocol in ("absolute", "safety", "likert"):
        assert judge_single(setup, protocol, a, tmp_path / f"{protocol}.jsonl").written == 2
    assert judge_multiturn(setup, convs, tmp_path / "mt.jsonl").written == 1
    rows = sum((read_rows(tmp_path / f"{n}.jsonl") for n in ("pw", "absolute", "safety", "likert", "mt")), [])
    calls = [c for r in rows for c in r["calls"]]
    assert len(calls) == 4 + 2 + 2 + 2 + 2
    for call in calls:  # a real reply for each call: judged or recorded missing with its raw text
        assert call["error"] is None and isinstance(call["raw"], str)
        assert call["completion_tokens"] <= 12 and call["prompt_tokens"] > 50
        assert call["missing"] == (call["label"] is None)
    rows_before = server.worker.stats.rows
    again, _ = judge_pairwise(setup, a, b, tmp_path / "pw-again.jsonl")
    assert again.usage["cache_hits"] == 4 and again.usage["attempts"] == 0  # a re-run: no HTTP call
    assert server.worker.stats.rows == rows_before


def test_weighted_mode_reads_the_servers_logprobs(server, engine, tmp_path):
    a = write_outputs(tmp_path / "a.jsonl", "m-a", ["Paris.", "4"], ["Capital of France?", "2+2?"])
    b = write_outputs(tmp_path / "b.jsonl", "m-b", ["Lyon.", "5"], ["Capital of France?", "2+2?"])
    config = JudgeConfig(name="serve", model=NAME, base_url=server.base_url, api_key_env="", mode="weighted",
                         concurrency=4, max_retries=1, timeout_s=120)
    report, _ = judge_pairwise(JudgeSetup(config, tmp_path / "cache.sqlite"), a, b, tmp_path / "w.jsonl")
    rows = read_rows(tmp_path / "w.jsonl")
    assert report.written == 2 and report.missing == 0
    decided = position_consistency(rows)["decided_calls"]
    assert decided in (0, 2, 4) and all(r["consistent"] for r in rows)  # one verdict for both orders
    template = load_template("pairwise-weighted")
    for row in rows:
        assert row["mode"] == "weighted" and sum(row["probs"]["combined"].values()) == pytest.approx(1.0)
        for call in row["calls"]:
            shown = (row["answers"]["a"], row["answers"]["b"])[:: 1 if call["tag"] == "ab" else -1]
            prompt = template.render(question=row["prompt"], answer_a=shown[0], answer_b=shown[1])
            ids = engine.prompt_ids([prompt])
            with torch.inference_mode():
                direct = engine.model(torch.tensor([ids])).logits[0, -1].float().log_softmax(-1)
            top = direct.topk(20)
            expected: dict[str, float] = {}
            for i, v in zip(top.indices.tolist(), top.values.tolist()):
                expected.setdefault(engine.token_text(i), v)
            assert call["logprobs"].keys() == expected.keys()
            assert list(call["logprobs"].values()) == pytest.approx(list(expected.values()), abs=2e-4)
            assert call["completion_tokens"] == 1 and sum(call["probs"].values()) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def local_judge():
    return LocalJudge.load("smollm2-135m-instruct", device="cpu")


@pytest.mark.parametrize("mode", ["generate", "weighted"])
def test_local_transformers_judge(local_judge, tmp_path, mode):
    a = write_outputs(tmp_path / "a.jsonl", "m-a", ["Paris."], ["Capital of France?"])
    b = write_outputs(tmp_path / "b.jsonl", "m-b", ["Lyon."], ["Capital of France?"])
    config = JudgeConfig(name="local", kind="local", model="smollm2-135m-instruct", max_tokens=8, mode=mode)
    setup = JudgeSetup(config, tmp_path / "cache.sqlite", client=local_judge)
    report = judge_single(setup, "likert", a, tmp_path / "lk.jsonl")
    (row,) = read_rows(tmp_path / "lk.jsonl")
    assert report.written == 1 and row["calls"][0]["error"] is None and row["calls"][0]["raw"] is not None
    assert row["judge"]["kind"] == "local" and row["judge"]["mode"] == mode and row["calls"][0]["seed"] > 0
    pairwise, _ = judge_pairwise(setup, a, b, tmp_path / "pw.jsonl")  # the same judge, a second event loop
    (pair,) = read_rows(tmp_path / "pw.jsonl")
    if mode == "weighted":  # never missing, a probability for every score and order
        assert row["verdict"] in range(1, 7) and 1 <= row["expected_score"] <= 6
        assert pairwise.missing == 0 and pair["verdict"] in ("a", "b", "tie")
        assert all(0 < p < 1 for c in pair["calls"] for p in c["probs"].values())
