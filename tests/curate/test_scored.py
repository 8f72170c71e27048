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
    alone (one row at a time, no padding). SmolLM2's tokenizer puts no start token before a text, so nothing
    predicts the answer's first token alone (HF never scores a sequence's first label): it is left out of both."""
    import torch

    assert tokenizer("a")["input_ids"] == tokenizer("a", add_special_tokens=False)["input_ids"]
    prefix = tokenizer.apply_chat_template([{"role": "user", "content": turns[0]}], tokenize=False,
                                           add_generation_prompt=True)
    context = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    answer = tokenizer(turns[1], add_special_tokens=False)["input_ids"]
    if len(context) + len(answer) > MAX_TOKENS and len(context) > MAX_TOKENS // 2:  # a long question: its end
        context = context[len(context) - MAX_TOKENS // 2:]
    answer = answer[:MAX_TOKENS - len(context)]
    with torch.no_grad():
        cond = model(input_ids=torch.tensor([context + answer]),
                     labels=torch.tensor([[-100] * (len(context) + 1) + answer[1:]])).loss
        alone = model(input_ids=torch.tensor([answer]), labels=torch.tensor([answer])).loss
    return float(cond) / float(alone)


def test_a_long_question_loses_its_head_and_keeps_half_the_budget_for_the_answer(lima_train):
    from lima_align.models import load_tokenizer

    question, answer = " ".join(f"word{i}" for i in range(300)), "The answer is " + "yes and " * 200
    smol = load_tokenizer("smollm2-135m-instruct")  # no start token (its bos_token opens a chat role)
    full, full_mask, start = encode([question, answer], smol, 10**6)
    ids, mask, _ = encode([question, answer], smol, 256)
    assert start is None and full[0] == smol.convert_tokens_to_ids("<|im_start|>")  # the template's, once
    assert len(ids) == 256 and mask.index(True) == 128
    first = full_mask.index(True)
    assert ids[:128] == full[first - 128:first]  # the question's last tokens, the template's header included
    assert ids[128:] == full[first:first + 128] and all(mask[128:])
    short, _, _ = encode(["Why?", answer], smol, 256)  # a short question: cut from the end only
    assert short == encode(["Why?", answer], smol, 10**6)[0][:256]
    full_ok, mask_ok, _ = encode([question, "ok"], smol, 10**6)
    ok, _, _ = encode([question, "ok"], smol, 256)  # a short answer: the question's end, then all of it
    assert ok == full_ok[mask_ok.index(True) - 128:] and len(ok) < 256

    gemma = load_tokenizer("gemma-3-270m")  # puts <bos> before a text: kept through the cut
    full, full_mask, start = encode([question, answer], gemma, 10**6)
    ids, mask, _ = encode([question, answer], gemma, 256)
    assert start == gemma.bos_token_id and ids[0] == start and mask.index(True) == 128
    first = full_mask.index(True)
    assert ids[1:128] == full[first - 127:first] and ids[128:] == full[first:first + 128]


def test_the_plain_layout_tokenizes_an_answer_as_the_whole_text_does(lima_train):
    """A base scorer without a chat template (gemma-3-270m) reads ``User: ...\n\nAssistant: ...``: scoring
    tokenizes the answer apart from its prompt, and the ids must still be those of the whole text (a lone
    space token before every answer was what splitting at ``Assistant: `` gave)."""
    from lima_align.curate.scoring import segments
    from lima_align.models import load_tokenizer

    gemma = load_tokenizer("gemma-3-270m")
    assert not gemma.chat_template
    rows = read_examples(lima_train)[:30]
    rows.append(Example(id="chain", source="test", conversations=["Hi?", "Hello.", "And then?", "Then this."]))
    for ex in rows:
        ids, mask, _ = encode(ex.conversations, gemma, 10**6)
        text = "".join(t for t, _ in segments(ex.conversations, gemma))
        assert ids == gemma(text)["input_ids"], ex.id
        answer = gemma(" " + ex.conversations[1], add_special_tokens=False)["input_ids"]
        first = mask.index(True)
        assert ids[first:first + len(answer)] == answer and all(mask[first:first + len(answer)])


def test_an_empty_answer_keeps_the_chat_template_for_the_rest(lima_train):
    from lima_align.curate.scoring import segments
    from lima_align.models import load_tokenizer

    smol = load_tokenizer("smollm2-135m-instruct")
    parts = segments(["First?", "One.", "Second?", ""], smol)
    assert [t for t, is_response in parts if is_response] == ["One."]
    assert parts[0][0].startswith("<|im_start|>") and "User: " not in "".join(t for t, _ in parts)
    plain = segments(["First?", "One.", "Second?", ""], load_tokenizer("gemma-3-270m"))  # no template
    assert [t for t, is_response in plain if is_response] == [" One."]
    assert "".join(t for t, _ in plain) == "User: First?\n\nAssistant: One.\n\nUser: Second?\n\nAssistant: "


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
        assert sum(mask) - 1 == every[ex.id]["tokens"] > 0  # the first answer token is scored in neither pass
        assert every[ex.id]["ifd"] == pytest.approx(_reference_ifd(model, tokenizer, ex.conversations), abs=2e-4)

    again = Scorers(cfg.scoring)  # a re-mix: every score from the cache, the scorer model never loaded
    assert [e.id for e in build_mix(cfg, scorers=again).splits["train"]] == [e.id for e in chosen]
    assert again._model is None
    low_cfg = _mix(lima_pool, "ifd", 4, tmp_path / "cache", max_tokens=MAX_TOKENS, ifd_keep="low")
    low = build_mix(low_cfg, scorers=(low_scorers := Scorers(low_cfg.scoring))).splits["train"]
    assert low_scorers._model is None  # another strategy setting, the same cached scores
    assert max(e.meta["mix"]["scores"]["ifd"] for e in low) <= min(
        v for i, v in eligible.items() if i not in {e.id for e in low})


def test_an_interrupted_scoring_run_keeps_the_chunks_it_finished(lima_pool, tmp_path):
    from lima_align.curate.scoring import IFDScorer, ifd_scores

    pool, cfg = read_examples(lima_pool), ScoringConfig(cache_dir=str(tmp_path), max_tokens=64)
    real = IFDScorer.load(cfg.scorer, cfg.max_tokens, cfg.batch_tokens)
    calls = []

    class Dies:  # the real scorer, killed while it scores its second chunk
        def score(self, conversations):
            calls.append(len(conversations))
            if len(calls) == 2:
                raise KeyboardInterrupt
            return real.score(conversations)

    with pytest.raises(KeyboardInterrupt):
        ifd_scores(pool, cfg, lambda: Dies(), chunk=4)
    assert calls == [4, 4]
    resumed = []
    again = ifd_scores(pool, cfg, lambda: resumed.append(1) or real, chunk=4)
    assert len(resumed) == 2  # rows 4-7 and 8-9: the first chunk came from the cache
    fresh = ifd_scores(pool, ScoringConfig(cache_dir=str(tmp_path / "fresh"), max_tokens=64), lambda: real)
    assert [s.ifd for s in again] == pytest.approx([s.ifd for s in fresh], abs=1e-6)


def test_the_scorer_identity_covers_its_chat_template_and_a_built_in_not_built_yet(tmp_path, monkeypatch):
    from lima_align.curate.scoring import model_identity
    from lima_align.models import materialise_builtin

    folder = tmp_path / "scorer"
    folder.mkdir()
    for f in materialise_builtin("smollm2-135m-instruct").iterdir():
        (folder / f.name).symlink_to(f)
    before = model_identity(str(folder))
    template = folder / "chat_template.jinja"
    assert template.is_symlink()  # the template decides the scored segments
    text = template.read_text(encoding="utf-8")
    template.unlink()
    template.write_text(text.replace("<|im_start|>", "<|im_start|> "), encoding="utf-8")
    assert model_identity(str(folder))["digest"] != before["digest"]

    monkeypatch.setenv("LIMA_ALIGN_CACHE", str(tmp_path / "empty-cache"))  # a first run: nothing built yet
    first = model_identity("smollm2-135m-instruct")
    assert first["digest"] and first == model_identity("smollm2-135m-instruct")


def test_scorer_and_judge_prompt_are_in_the_mix_key(lima_pool, tmp_path):
    smol = scoring_identity(_mix(lima_pool, "ifd", 2, tmp_path))
    gemma = scoring_identity(_mix(lima_pool, "ifd", 2, tmp_path, scorer="gemma-3-270m"))
    assert smol["ifd"]["method"] == "ifd-v3" and smol != gemma
    assert smol["ifd"]["model"]["dtype"] == "float32"  # CPU scores are not GPU (bfloat16) scores
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


def test_two_arms_rating_one_pool_at_once_ask_the_judge_once_per_candidate(lima_train, tmp_path, judge_yaml):
    """quality-1k and deita-1k of a parallel ablation rate the same pool into one file: the second waits for the
    first and then finds every rating (no duplicate judge calls, no interleaved lines)."""
    import threading

    from lima_align.curate.rating import rate

    pool = read_examples(lima_train)[40:52]

    def slow(body, n):
        return Action(text=_rater(body, n).text, delay_s=0.05)

    with stub_server(slow) as server:
        cfg = ScoringConfig(cache_dir=str(tmp_path / "cache"), judge=judge_yaml(server))
        out: dict[int, list] = {}
        arms = [threading.Thread(target=lambda k=k: out.__setitem__(k, rate(pool, cfg, "quality")))
                for k in range(2)]
        for t in arms:
            t.start()
        for t in arms:
            t.join()
        assert server.calls == len(pool)
    assert out[0] == out[1] == [quality_of(ex.response) for ex in pool]
    files = list((tmp_path / "cache" / "ratings").glob("*.jsonl"))
    lines = [json.loads(x) for f in files for x in f.read_text().splitlines()]
    assert sorted(r["id"] for r in lines) == sorted({r["id"] for r in lines}) and len(lines) == len(pool)


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
