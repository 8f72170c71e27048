"""The model-scored strategies (ifd, quality, complexity, deita) on real candidates from ../shared/data.

IFD is scored by the real built-in scorer (smollm2-135m-instruct) and recomputed here independently for three
rows with transformers' own loss; the judge strategies rate through the real HTTP judge client against a local
OpenAI-compatible stand-in whose rating is a known function of the text, so the expected selection is computed
here from that function.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest
import yaml

from lima_align.conversation import Example
from lima_align.curate.mix import InputSpec, MixConfig, build_mix, check_recipe, scoring_identity, write_mix
from lima_align.curate.scored import Scorers, select_deita
from lima_align.curate.scoring import ScoringConfig, encode
from lima_align.curate.strategies import Context
from lima_align.errors import LimaError
from lima_align.evaluate.stub_server import Action, stub_server
from lima_align.formats.rows import read_examples, write_examples

MAX_TOKENS = 160  # short sequences: the test scores 10 real rows in seconds


@pytest.fixture(scope="module")
def lima_pool(lima_train: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = read_examples(lima_train)[:10]
    path = tmp_path_factory.mktemp("pool") / "pool.jsonl"
    write_examples(path, rows)
    return path


def _mix(pool: Path, strategy: str, n: int, cache: Path, **scoring) -> MixConfig:
    return MixConfig(inputs=[InputSpec(path=str(pool), n=n, name="pool")], strategy=strategy,
                     scoring=ScoringConfig(cache_dir=str(cache), **scoring))


def _reference_ifd(model, tokenizer, turns: list[str]) -> float:
    """IFD written out plainly: HF's mean label loss of the answer after the chat-template prompt, over its loss
    after the start token alone (one row at a time, no padding)."""
    import torch

    prefix = tokenizer.apply_chat_template([{"role": "user", "content": turns[0]}], tokenize=False,
                                           add_generation_prompt=True)
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    context = [start] + tokenizer(prefix, add_special_tokens=False)["input_ids"]
    answer = tokenizer(turns[1], add_special_tokens=False)["input_ids"]
    if len(context) + len(answer) > MAX_TOKENS and len(context) > MAX_TOKENS // 2:  # a long question: its end
        context = [start] + context[len(context) - (MAX_TOKENS // 2 - 1):]
    answer = answer[:MAX_TOKENS - len(context)]
    with torch.no_grad():
        cond = model(input_ids=torch.tensor([context + answer]),
                     labels=torch.tensor([[-100] * len(context) + answer])).loss
        alone = model(input_ids=torch.tensor([[start] + answer]), labels=torch.tensor([[-100] + answer])).loss
    return float(cond) / float(alone)


def test_a_long_question_loses_its_head_and_keeps_half_the_budget_for_the_answer(lima_train):
    from lima_align.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    question, answer = " ".join(f"word{i}" for i in range(300)), "The answer is " + "yes and " * 200
    full, full_mask, start = encode([question, answer], tokenizer, 10**6)
    ids, mask, _ = encode([question, answer], tokenizer, 256)
    assert len(ids) == 256 and ids[0] == start and mask.index(True) == 128
    first = full_mask.index(True)
    assert ids[1:128] == full[first - 127:first]  # the question's last tokens, the template's header included
    assert ids[128:] == full[first:first + 128] and all(mask[128:])
    short, _, _ = encode(["Why?", answer], tokenizer, 256)  # a short question: cut from the end only
    assert short == encode(["Why?", answer], tokenizer, 10**6)[0][:256]
    full_ok, mask_ok, _ = encode([question, "ok"], tokenizer, 10**6)
    ok, _, _ = encode([question, "ok"], tokenizer, 256)  # a short answer: the question's end, then all of it
    assert ok == [start] + full_ok[mask_ok.index(True) - 127:] and len(ok) < 256


def test_ifd_takes_the_highest_ifd_under_one_recomputed_independently(lima_pool, tmp_path):
    cfg = _mix(lima_pool, "ifd", 4, tmp_path / "cache", max_tokens=MAX_TOKENS)
    scorers = Scorers(cfg.scoring)
    result = build_mix(cfg, scorers=scorers)
    chosen = result.splits["train"]
    assert len(chosen) == 4
    pool = read_examples(lima_pool)
    every = {ex.id: s for ex, s in zip(pool, scorers.ifd(pool))}  # all cached now: no second scoring pass
    eligible = {i: s["ifd"] for i, s in every.items() if s["ifd"] <= 1.0}
    picked = {ex.id: ex.meta["mix"]["scores"] for ex in chosen}
    assert set(picked) <= set(eligible)
    assert min(eligible[i] for i in picked) >= max(v for i, v in eligible.items() if i not in picked)
    assert sorted(s["rank"] for s in picked.values()) == [1, 2, 3, 4]
    ranked = sorted(picked, key=lambda i: picked[i]["rank"])
    assert [picked[i]["ifd"] for i in ranked] == sorted((picked[i]["ifd"] for i in ranked), reverse=True)
    draw = result.selection["draws"][0]
    # a question longer than MAX_TOKENS is scored on the end of it: every row has response tokens
    assert draw["refused"].get("ifd_not_scored", 0) == 0 and all(s["tokens"] > 0 for s in every.values())
    assert draw["refused"].get("ifd_above_max", 0) == len(every) - len(eligible)
    assert draw["audit"]["scored_by"]["model"]["name"] == "smollm2-135m-instruct"
    assert draw["audit"]["scored_by"]["model"]["digest"]  # a built-in is a local folder: its weights' digest

    model, tokenizer = scorers._scorer().model, scorers._scorer().tokenizer
    long_question = [ex for ex in pool if len(encode(ex.conversations[:1], tokenizer, 10**6)[0]) > MAX_TOKENS]
    assert long_question  # one of the 3 recomputed has its question's head cut
    for ex in [long_question[0], *[ex for ex in pool if ex is not long_question[0]][:2]]:
        ids, mask, _ = encode(ex.conversations, tokenizer, MAX_TOKENS)
        assert sum(mask) == every[ex.id]["tokens"] > 0
        assert every[ex.id]["ifd"] == pytest.approx(_reference_ifd(model, tokenizer, ex.conversations), abs=2e-4)

    again = Scorers(cfg.scoring)  # a re-mix: every score from the cache, the scorer model never loaded
    assert [e.id for e in build_mix(cfg, scorers=again).splits["train"]] == [e.id for e in chosen]
    assert again._model is None
    low_cfg = _mix(lima_pool, "ifd", 4, tmp_path / "cache", max_tokens=MAX_TOKENS, ifd_keep="low")
    low = build_mix(low_cfg, scorers=(low_scorers := Scorers(low_cfg.scoring))).splits["train"]
    assert low_scorers._model is None  # another strategy setting, the same cached scores
    assert max(e.meta["mix"]["scores"]["ifd"] for e in low) <= min(
        v for i, v in eligible.items() if i not in {e.id for e in low})


def test_scorer_and_judge_prompt_are_in_the_mix_key(lima_pool, tmp_path):
    smol = scoring_identity(_mix(lima_pool, "ifd", 2, tmp_path))
    gemma = scoring_identity(_mix(lima_pool, "ifd", 2, tmp_path, scorer="gemma-3-270m"))
    assert smol["ifd"]["method"] == "ifd-v2" and smol != gemma
    assert scoring_identity(MixConfig(inputs=[InputSpec(path=str(lima_pool), n=2)], strategy="random")) == {}
    judge = tmp_path / "judge.yaml"
    judge.write_text(yaml.safe_dump({"name": "j", "kind": "openai", "model": "m1", "base_url": "http://x/v1"}))
    q = scoring_identity(_mix(lima_pool, "quality", 2, tmp_path, judge=str(judge)))["quality"]["quality"]
    assert q["prompt"]["version"] == "lima-quality-v1" and q["judge"]["model"] == "m1"
    judge.write_text(yaml.safe_dump({"name": "j", "kind": "openai", "model": "m2", "base_url": "http://x/v1"}))
    assert scoring_identity(_mix(lima_pool, "quality", 2, tmp_path, judge=str(judge)))["quality"]["quality"] != q
    with pytest.raises(LimaError, match="scoring.judge"):
        check_recipe(_mix(lima_pool, "deita", 2, tmp_path))


# ------------------------------------------------------------------------------------- judge strategies
def _section(prompt: str, name: str) -> str:
    return re.search(rf"\[{name}\]\n(.*?)\n\n\[", prompt, re.S).group(1)


def quality_of(response: str) -> int:
    """The stand-in judge's quality rating: a known function of the response's length."""
    return min(6, 1 + len(response) // 700)


def complexity_of(request: str) -> int:
    return min(6, 1 + len(request.split()) // 12)


def _rater(body: dict, _n: int) -> Action:
    prompt = body["messages"][0]["content"]
    if "[Response]" in prompt:
        score = quality_of(_section(prompt, "Response"))
    else:
        score = complexity_of(_section(prompt, "Request"))
    return Action(text=f"Reasoning in one line.\n{score}\n{score}")


@pytest.fixture
def judge_yaml(tmp_path, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "k")

    def write(server) -> str:
        path = tmp_path / "judge.yaml"
        path.write_text(yaml.safe_dump({"name": "stub", "kind": "openai", "model": "stub-rater", "mode": "generate",
                                        "base_url": server.base_url, "api_key_env": "STUB_KEY", "max_retries": 0}))
        return str(path)
    return write


def test_quality_keeps_only_rows_at_or_above_the_threshold_and_the_best_of_them(lima_train, tmp_path, judge_yaml):
    pool = read_examples(lima_train)[10:40]
    path = tmp_path / "pool.jsonl"
    write_examples(path, pool)
    expected = {ex.id: quality_of(ex.response) for ex in pool}
    with stub_server(_rater) as server:
        cfg = _mix(path, "quality", 6, tmp_path / "cache", judge=judge_yaml(server), quality_min=3)
        check_recipe(cfg)
        result = build_mix(cfg)
        assert server.calls == len(pool)
        report = write_mix(result, cfg, tmp_path / "out" / "train.jsonl")
        assert [e.id for e in build_mix(cfg).splits["train"]] == [e.id for e in result.splits["train"]]
        assert server.calls == len(pool)  # the re-mix asked the judge nothing
    chosen = result.splits["train"]
    above = sorted((v for v in expected.values() if v >= 3), reverse=True)
    assert len(chosen) == min(6, len(above))
    assert all(e.meta["mix"]["scores"]["quality"] == expected[e.id] >= 3 for e in chosen)
    assert sorted((e.meta["mix"]["scores"]["quality"] for e in chosen), reverse=True) == above[:len(chosen)]
    draw = report["selection"]["draws"][0]
    assert draw["refused"].get("quality_below_min", 0) == sum(v < 3 for v in expected.values())
    assert draw["audit"]["scored_by"]["quality"]["prompt"]["version"] == "lima-quality-v1"
    md = Path(report["outputs"]["md"]).read_text()
    assert "## Scores (scored strategies)" in md and "prompt lima-quality-v1" in md
    rows = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert all(r["meta"]["mix"]["scores"]["quality"] >= 3 for r in rows)


def _weighted_rater(body: dict, _n: int) -> Action:
    """A weighted judge: the digit's probabilities peak at the known rating (expected value = rating + 0.1)."""
    prompt = body["messages"][0]["content"]
    score = quality_of(_section(prompt, "Response")) if "[Response]" in prompt else complexity_of(
        _section(prompt, "Request"))
    probs = {str(score): 0.9, str(min(6, score + 1)): 0.1} if score < 6 else {"6": 1.0}
    return Action(text=str(score), logprobs={k: math.log(v) for k, v in probs.items()})


class _Embedder:
    """Prompt embeddings where prompts sharing their first word are the same point (near-duplicates)."""

    def encode(self, texts):
        import numpy as np

        words = sorted({t.split()[0] for t in texts})
        return np.stack([np.eye(len(words))[words.index(t.split()[0])] for t in texts])


def test_deita_ranks_by_complexity_times_quality_and_skips_similar_prompts(lima_train, tmp_path, judge_yaml):
    rows = read_examples(lima_train)[40:52]
    twin = Example("twin", [rows[0].prompt + " Please explain in detail, with examples and caveats.",
                            rows[0].response * 3], rows[0].source, {})
    pool = rows + [twin]
    with stub_server(_weighted_rater) as server:
        path = judge_yaml(server)
        data = yaml.safe_load(Path(path).read_text())
        Path(path).write_text(yaml.safe_dump({**data, "mode": "weighted", "top_logprobs": 5}))
        sc = Scorers(ScoringConfig(judge=path, cache_dir=str(tmp_path / "cache"), deita_max_similarity=0.9))
        sel = select_deita(pool, 5, Context(random.Random(0), _Embedder(), sc))
    expect = {ex.id: (complexity_of(ex.prompt) + (0.1 if complexity_of(ex.prompt) < 6 else 0))
              * (quality_of(ex.response) + (0.1 if quality_of(ex.response) < 6 else 0)) for ex in pool}
    got = {ex.id: s for ex, s in zip(sel.chosen, sel.scores)}
    for i, s in got.items():
        assert s["deita"] == pytest.approx(expect[i], abs=1e-3)
    first_words = [ex.prompt.split()[0] for ex in sel.chosen]
    assert len(set(first_words)) == len(first_words)  # no two chosen prompts are "the same point"
    ranked = sorted(expect, key=lambda i: -expect[i])
    greedy, seen = [], set()
    for i in ranked:  # the expected greedy pass, written out
        word = next(ex for ex in pool if ex.id == i).prompt.split()[0]
        if word not in seen and len(greedy) < 5:
            greedy.append(i)
            seen.add(word)
    assert set(got) == set(greedy)
    skipped = ranked.index(greedy[-1]) + 1 - len(greedy)
    assert sel.refused.get("deita_too_similar", 0) == skipped
