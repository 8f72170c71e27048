"""Protocols run through the resumable runner against the scripted server: verdicts, provenance, missing
judgments with their raw text, resume without repeated calls."""

import asyncio
import json

from lima_align.evaluate.answers import pair_answers, read_answers
from lima_align.evaluate.cache import JudgeCache
from lima_align.evaluate.clients import CachedJudge, CallParams, OpenAIJudge, RetryPolicy
from lima_align.evaluate.parsers import PARSERS
from lima_align.evaluate.protocols import combine_orders, model_verdict, pairwise_tasks, single_tasks
from lima_align.evaluate.runner import JudgeRun, run_tasks
from lima_align.evaluate.stub_server import Action, stub_server
from lima_align.evaluate.templates import load_template

from .conftest import prefer_longer

FAST = RetryPolicy(max_retries=3, backoff_s=0.01, timeout_s=0.5)


def make_run(server, tmp_path, protocol="pairwise", template=None):
    judge = CachedJudge(OpenAIJudge("stub-judge", base_url=server.base_url, api_key="k", retry=FAST),
                        JudgeCache(tmp_path / "cache.sqlite"))
    return JudgeRun(judge, load_template(template or protocol), PARSERS[protocol], CallParams(),
                    {"model": "stub-judge"})


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_combination_rule():
    assert model_verdict("ab", "A") == "a" and model_verdict("ba", "A") == "b" and model_verdict("ba", "tie") == "tie"
    assert combine_orders("a", "a") == {"verdict": "a", "consistent": True, "missing": False}
    assert combine_orders("a", "b") == {"verdict": "tie", "consistent": False, "missing": False}
    assert combine_orders("a", "tie")["verdict"] == "tie"
    assert combine_orders(None, "a") == {"verdict": None, "consistent": None, "missing": True}


def test_pairwise_both_orders_with_provenance(outputs, tmp_path):
    pairing = pair_answers(read_answers(outputs[0]), read_answers(outputs[1]))
    assert pairing.by == "prompt" and len(pairing.pairs) == 4
    out = tmp_path / "j.jsonl"
    with stub_server(prefer_longer) as server:
        report = asyncio.run(run_tasks(pairwise_tasks(pairing.pairs, load_template("pairwise")),
                                       make_run(server, tmp_path), out))
        assert server.calls == 8  # 4 pairs x 2 orders
    assert report.written == 4 and report.missing == 0
    by_id = {r["id"]: r for r in rows(out)}
    assert [by_id[f"q{i}"]["verdict"] for i in range(4)] == ["a", "b", "tie", "a"]
    row = by_id["q0"]
    assert [c["tag"] for c in row["calls"]] == ["ab", "ba"]
    assert [c["label"] for c in row["calls"]] == ["A", "B"]  # swapped order, same model wins
    assert row["consistent"] is True and row["models"] == {"a": "model-a", "b": "model-b"}
    assert row["template"]["version"] == "lima-pairwise-v1" and row["judge"] == {"model": "stub-judge"}
    assert row["calls"][0]["raw"].endswith("Verdict: A") and row["calls"][0]["started_at"]


def test_position_biased_judge_gives_inconsistent_ties(outputs, tmp_path):
    pairs = pair_answers(read_answers(outputs[0]), read_answers(outputs[1])).pairs
    out = tmp_path / "j.jsonl"
    with stub_server(lambda body, n: Action(text="Verdict: A")) as server:
        asyncio.run(run_tasks(pairwise_tasks(pairs, load_template("pairwise")), make_run(server, tmp_path), out))
    assert {(r["verdict"], r["consistent"]) for r in rows(out)} == {("tie", False)}


def test_faults_end_judged_or_missing_with_raw_text(outputs, tmp_path):
    """Every 3rd request fails transiently, every 5th answers garbage: each row ends judged or missing."""
    def flaky(body, n):
        if n % 3 == 0:
            return Action(status=(429, 500, 502)[n % 3])
        if n % 7 == 0:
            return Action(raw=b"\x00garbage")
        if n % 5 == 0:
            return Action(text="I cannot decide {{}} <script>")
        return prefer_longer(body, n)

    pairs = pair_answers(read_answers(outputs[0]), read_answers(outputs[1])).pairs
    answers = read_answers(outputs[0])
    with stub_server(flaky) as server:
        out = tmp_path / "p.jsonl"
        asyncio.run(run_tasks(pairwise_tasks(pairs, load_template("pairwise")), make_run(server, tmp_path), out))
        out2 = tmp_path / "abs.jsonl"
        asyncio.run(run_tasks(single_tasks(answers, load_template("absolute"), "absolute"),
                              make_run(server, tmp_path, "absolute"), out2))
    for row in rows(out) + rows(out2):
        assert row["missing"] == (row["verdict"] is None)
        for call in row["calls"]:
            assert call["error"] is None  # transient faults were retried away
            if call["label"] is None:
                assert call["raw"] == "I cannot decide {{}} <script>" and call["missing"]
    assert any(r["missing"] for r in rows(out) + rows(out2))


def test_resume_skips_done_rows_cuts_torn_line_and_repeats_no_call(outputs, tmp_path):
    answers = read_answers(outputs[0])
    tasks = single_tasks(answers, load_template("likert"), "likert")
    out = tmp_path / "likert.jsonl"
    with stub_server(prefer_longer) as server:
        asyncio.run(run_tasks(tasks[:2], make_run(server, tmp_path, "likert"), out))
        with out.open("a") as fh:
            fh.write('{"key": "likert|model-a|q2|0", "verdi')  # killed mid-write
        report = asyncio.run(run_tasks(tasks, make_run(server, tmp_path, "likert"), out))
        assert server.calls == 4  # q0, q1 then q2, q3: nothing twice
        assert report.already_done == 2 and report.torn_lines_dropped == 1 and report.written == 2
        again = asyncio.run(run_tasks(tasks, make_run(server, tmp_path, "likert"), tmp_path / "fresh.jsonl"))
        assert server.calls == 4 and again.usage["cache_hits"] == 4  # a new file from the cache: 0 calls
    got = rows(out)
    assert sorted(r["key"] for r in got) == sorted(t.key for t in tasks)
    assert {r["id"]: r["verdict"] for r in got} == {"q0": 6, "q1": 1, "q2": 1, "q3": 5}


def test_failed_calls_are_recorded_then_retried_on_rerun(outputs, tmp_path):
    tasks = single_tasks(read_answers(outputs[0]), load_template("absolute"), "absolute")
    out = tmp_path / "abs.jsonl"
    down = lambda body, n: Action(status=503) if "Question 1?" in body["messages"][0]["content"] else \
        Action(text="Rating: Excellent")  # noqa: E731
    with stub_server(down) as server:
        first = asyncio.run(run_tasks(tasks, make_run(server, tmp_path, "absolute"), out))
    failed = [r for r in rows(out) if r["missing"]]
    assert first.missing == 1 and len(failed) == 1 and "HTTP 503" in failed[0]["calls"][0]["error"]
    with stub_server(lambda body, n: Action(text="Rating: Fail")) as server:
        second = asyncio.run(run_tasks(tasks, make_run(server, tmp_path, "absolute"), out))
        assert server.calls == 1  # only the failed one, the others are done
    assert second.failed_rows_retried == 1 and second.written == 1
    got = {r["id"]: r["verdict"] for r in rows(out)}
    assert len(rows(out)) == 4 and got == {"q0": "excellent", "q1": "fail", "q2": "excellent", "q3": "excellent"}
