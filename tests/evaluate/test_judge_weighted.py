"""The weighted verdict mode: verdicts read from the verdict tokens' probabilities, both pairwise orders averaged.

A judge with a strong position bias is constructed (it prefers whatever is shown first): averaged, its verdicts
have a first-position rate of exactly 0.5 and none is missing, while the same judge read as text picks "A"
every time. The HTTP client is run for real against the scripted stub's logprobs."""

import asyncio
import json
import math
import re

import pytest

from lima_align.errors import LimaError
from lima_align.evaluate.calibrate import calibration_summary
from lima_align.evaluate.clients import CachedJudge, CallParams, OpenAIJudge, Reply, RetryPolicy
from lima_align.evaluate.cache import NoCache
from lima_align.evaluate.judge_config import JudgeConfig
from lima_align.evaluate.judging import JudgeSetup, judge_pairwise, judge_single, protocol_template, read_rows
from lima_align.evaluate.protocols import combine_weighted, hard_verdict
from lima_align.evaluate.statistics import position_consistency
from lima_align.evaluate.stub_server import Action, stub_server

from .conftest import write_outputs

FAST = RetryPolicy(max_retries=2, backoff_s=0.01, timeout_s=2)
ANSWER = re.compile(r"<answer_[ab]>\n(.*?)\n</answer_[ab]>", re.S)


def first_shown_logprobs(prompt: str, bias: float = 3.0) -> dict[str, float]:
    """A position-biased judge: the answer shown first gets ``bias`` extra logit; longer answers are better."""
    first, second = (len(x) for x in ANSWER.findall(prompt))
    logits = {"A": bias + first / 40, "B": second / 40, "C": 0.5, "The": 1.0}
    norm = math.log(sum(math.exp(v) for v in logits.values()))
    return {token: v - norm for token, v in logits.items()}


class BiasedJudge:
    """A ChatJudge in process: the weighted reply of :func:`first_shown_logprobs`, or its argmax as text."""

    model = "biased"

    def __init__(self, bias: float = 3.0):
        self.bias = bias
        self.params: list[CallParams] = []

    async def complete(self, messages, params):
        self.params.append(params)
        logprobs = first_shown_logprobs(messages[-1]["content"], self.bias)
        if params.top_logprobs:
            return Reply("A", 100, 1, logprobs=logprobs)
        return Reply("Answer A is the better one.\nVerdict: A", 100, 10)


@pytest.fixture()
def pair_files(tmp_path):
    a = write_outputs(tmp_path / "a.jsonl", "model-a", ["a long and careful answer " * 4, "short", "x" * 30, "same"])
    b = write_outputs(tmp_path / "b.jsonl", "model-b", ["short", "a long and careful answer " * 4, "y" * 60, "same"])
    return a, b


def test_combined_distribution_is_the_mean_of_the_two_orders_in_model_terms():
    ab = {"A": 0.7, "B": 0.1, "tie": 0.2}  # a shown first
    ba = {"A": 0.6, "B": 0.3, "tie": 0.1}  # b shown first: "B" is model a
    row = combine_weighted(ab, ba)
    assert row["probs"]["combined"] == pytest.approx({"a": (0.7 + 0.3) / 2, "b": (0.1 + 0.6) / 2, "tie": 0.15})
    assert row["probs"]["ba"] == {"a": 0.3, "b": 0.6, "tie": 0.1}
    assert row["soft_preference"] == pytest.approx(0.5 + 0.15 / 2)
    assert row["verdict"] == "a" and row["missing"] is False
    assert combine_weighted(ab, None)["missing"] is True and combine_weighted(None, ba)["verdict"] is None


def test_hard_verdict_rule():
    assert hard_verdict({"a": 0.5, "b": 0.3, "tie": 0.2}) == "a"
    assert hard_verdict({"a": 0.2, "b": 0.3, "tie": 0.5}) == "tie"
    assert hard_verdict({"a": 0.4, "b": 0.4, "tie": 0.2}) == "tie"  # a and b level: neither is better


@pytest.mark.parametrize("bias", [3.0, 8.0, -4.0])  # for the first-shown answer, or (< 0) the second
def test_a_position_biased_judge_averaged_has_first_position_rate_one_half(pair_files, tmp_path, bias):
    judge = BiasedJudge(bias)
    setup = JudgeSetup(JudgeConfig(name="biased", model="biased", mode="weighted"), None, client=judge)
    report, _ = judge_pairwise(setup, *pair_files, tmp_path / "w.jsonl")
    rows = read_rows(tmp_path / "w.jsonl")
    assert report.written == 4 and report.missing == 0 and all(not r["missing"] for r in rows)
    assert all(p.top_logprobs == 20 and p.max_tokens == 1 and p.candidates == ("A", "B", "C") for p in judge.params)
    # the raw judge prefers the first- (or never picks the first-) shown answer in every call ...
    raw = {c["raw_label"] for r in rows for c in r["calls"]}
    assert (raw == {"A"}) if bias > 0 else ("A" not in raw and "B" in raw)
    # ... its averaged verdicts do not: exactly one of each pair's two calls has the winner shown first
    position = position_consistency(rows)
    assert position["first_position_win_rate"] == 0.5 and position["decided_calls"] == 6  # q3 is a tie
    by_id = {r["id"]: r for r in rows}
    assert [by_id[f"q{i}"]["verdict"] for i in range(4)] == ["a", "b", "b", "tie"]  # longer wins; equal: level
    for row in rows:
        calls = {c["tag"]: c for c in row["calls"]}
        assert sum(calls["ab"]["probs"].values()) == pytest.approx(1.0)
        p_a = (calls["ab"]["probs"]["A"] + calls["ba"]["probs"]["B"]) / 2
        assert row["probs"]["combined"]["a"] == pytest.approx(p_a)
        assert sum(row["probs"]["combined"].values()) == pytest.approx(1.0)
        assert row["mode"] == "weighted" and row["judge"]["mode"] == "weighted"
        assert row["template"]["name"] == "pairwise-weighted" and 0 <= row["soft_preference"] <= 1
        assert calls["ab"]["logprobs"] == first_shown_logprobs(_prompt(row, "ab"), bias)


def _prompt(row, order):
    first, second = (row["answers"]["a"], row["answers"]["b"])[:: 1 if order == "ab" else -1]
    from lima_align.evaluate.templates import load_template

    return load_template("pairwise-weighted").render(question=row["prompt"], answer_a=first, answer_b=second)


def test_the_same_judge_read_as_text_always_says_A(pair_files, tmp_path):
    setup = JudgeSetup(JudgeConfig(name="biased", model="biased", mode="generate"), None, client=BiasedJudge())
    judge_pairwise(setup, *pair_files, tmp_path / "g.jsonl")
    rows = read_rows(tmp_path / "g.jsonl")
    assert position_consistency(rows)["first_position_win_rate"] == 1.0
    assert {r["verdict"] for r in rows} == {"tie"} and all(r["mode"] == "generate" for r in rows)


def test_calibration_summary_of_a_weighted_judge(pair_files, tmp_path):
    setup = JudgeSetup(JudgeConfig(name="biased", model="biased", mode="weighted"), None, client=BiasedJudge())
    judge_pairwise(setup, *pair_files, tmp_path / "w.jsonl")
    rows = read_rows(tmp_path / "w.jsonl")
    summary = calibration_summary(rows, {r["id"]: "a" for r in rows})
    assert summary["missing"] == 0 and summary["first_position_rate"] == 0.5
    assert summary["accuracy"] == 0.25 and summary["accuracy_ci95"][0] < 0.25 < summary["accuracy_ci95"][1]
    assert summary["weighted"]["raw_first_position_rate"] == 1.0
    assert summary["weighted"]["raw_first_position_share"] > 0.8
    assert summary["weighted"]["per_order_consistency"] == 0.0  # alone, each order says "A"


def test_weighted_mode_needs_a_prompt_with_choices():
    weighted, plain = JudgeConfig(mode="weighted"), JudgeConfig()
    assert plain.mode == "generate" and JudgeConfig(kind="local").mode == "weighted"
    assert protocol_template(weighted, "likert").name == "likert-weighted"
    with pytest.raises(LimaError, match="choices"):
        protocol_template(weighted, "pairwise", "pairwise")
    with pytest.raises(LimaError, match="weighted"):
        protocol_template(plain, "pairwise", "pairwise-weighted")
    with pytest.raises(ValueError, match="mode"):
        JudgeConfig(mode="vibes")


def _order_logprobs(body, _n):
    """The stub's weighted judge: 'A' favoured when model a's long answer is shown first."""
    prompt = body["messages"][-1]["content"]
    return Action(logprobs=first_shown_logprobs(prompt, bias=0.0))


def test_http_weighted_mode_against_the_stub(pair_files, tmp_path):
    with stub_server(_order_logprobs) as server:
        config = JudgeConfig(name="stub", model="stub", base_url=server.base_url, api_key_env="", mode="weighted",
                             top_logprobs=2, max_retries=1, backoff_s=0.01)
        setup = JudgeSetup(config, tmp_path / "cache.sqlite")
        report, _ = judge_pairwise(setup, *pair_files, tmp_path / "w.jsonl")
        body = server.requests[0]
        assert body["logprobs"] is True and body["top_logprobs"] == 2 and body["max_tokens"] == 1
        again, _ = judge_pairwise(setup, *pair_files, tmp_path / "again.jsonl")
        assert again.usage["cache_hits"] == 8 and server.calls == 8  # the re-run is served by the cache
    rows = {r["id"]: r for r in read_rows(tmp_path / "w.jsonl")}
    assert report.missing == 0 and [rows[f"q{i}"]["verdict"] for i in range(4)] == ["a", "b", "b", "tie"]
    call = rows["q0"]["calls"][0]
    assert call["tag"] == "ab" and set(call["logprobs"]) == {"A", "The"}  # the endpoint's top 2
    assert call["probs"] == {"A": 1.0, "B": 0.0, "tie": 0.0}  # verdict tokens outside the top K count 0
    assert rows["q3"]["probs"]["combined"] == {"a": 0.0, "b": 0.0, "tie": 1.0}
    cached = {r["id"]: r for r in read_rows(tmp_path / "again.jsonl")}
    assert cached["q0"]["probs"] == rows["q0"]["probs"]  # logprobs come back from the cache


def test_an_endpoint_without_logprobs_is_an_error_not_retried(pair_files, tmp_path):
    with stub_server(lambda body, n: Action(text="A")) as server:
        client = OpenAIJudge("stub", base_url=server.base_url, api_key="k", retry=FAST)
        reply = asyncio.run(client.complete([{"role": "user", "content": "x"}],
                                            CallParams(top_logprobs=5, candidates=("A", "B"))))
        assert server.calls == 1
    assert reply.text is None and "no logprobs" in reply.error


def test_http_weighted_likert_gives_the_expected_score(tmp_path):
    answers = write_outputs(tmp_path / "a.jsonl", "m", ["fine"])
    digits = {"1": 0.1, "2": 0.1, "3": 0.2, "4": 0.4, "5": 0.1, "6": 0.1}
    with stub_server(lambda body, n: Action(logprobs={k: math.log(v) for k, v in digits.items()})) as server:
        config = JudgeConfig(name="stub", model="stub", base_url=server.base_url, api_key_env="", mode="weighted")
        judge_single(JudgeSetup(config, None), "likert", answers, tmp_path / "lk.jsonl")
    (row,) = read_rows(tmp_path / "lk.jsonl")
    assert row["verdict"] == 4 and row["calls"][0]["label"] == 4  # an int, as in generate mode
    assert row["expected_score"] == pytest.approx(sum(int(k) * v for k, v in digits.items()))
    assert row["probs"] == pytest.approx(digits) and row["template"]["name"] == "likert-weighted"
    json.dumps(row)


def test_weighted_params_keep_generate_cache_keys_apart():
    from lima_align.evaluate.cache import cache_key

    msg = [{"role": "user", "content": "x"}]
    plain = CallParams()
    assert plain.to_dict() == {"temperature": 0.0, "max_tokens": 512, "seed": None, "sample": 0}
    weighted = CallParams(max_tokens=1, top_logprobs=5, candidates=("A", "B"))
    assert cache_key("m", "v", msg, plain.to_dict()) != cache_key("m", "v", msg, weighted.to_dict())
    assert CallParams(key="k1") == CallParams(key="k2")  # the call's own key is not part of its identity


def test_cached_judge_passes_the_call_key_to_the_client():
    seen = []

    class Spy:
        model = "spy"

        async def complete(self, messages, params):
            seen.append(params.key)
            return Reply("ok")

    reply = asyncio.run(CachedJudge(Spy(), NoCache()).complete([{"role": "user", "content": "x"}], CallParams(), "v"))
    assert seen == [reply.key] and len(reply.key) == 64
