"""Every protocol end to end against the real ``lima-align serve`` app with a small real model on 127.0.0.1
(smollm2-135m-instruct, tiny max_tokens): its verdicts are weak, the plumbing is real. Plus the local judge."""

import json

import pytest

from lima_align.evaluate.judge_config import JudgeConfig
from lima_align.evaluate.judging import JudgeSetup, judge_multiturn, judge_pairwise, judge_single, read_rows
from lima_align.evaluate.local import LocalJudge
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


def test_local_transformers_judge(engine, tmp_path):
    a = write_outputs(tmp_path / "a.jsonl", "m-a", ["Paris."], ["Capital of France?"])
    config = JudgeConfig(name="local", kind="local", model="smollm2-135m-instruct", max_tokens=8)
    setup = JudgeSetup(config, tmp_path / "cache.sqlite", client=LocalJudge(engine, "smollm2-135m-instruct"))
    report = judge_single(setup, "likert", a, tmp_path / "lk.jsonl")
    (row,) = read_rows(tmp_path / "lk.jsonl")
    assert report.written == 1 and row["calls"][0]["error"] is None and row["calls"][0]["raw"] is not None
    assert row["judge"]["kind"] == "local"
