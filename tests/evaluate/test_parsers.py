"""Parsers: scripted judge replies, including the ambiguous ones that must be recorded missing."""

import math

import pytest

from lima_align.curate.scoring import RATING_ASPECTS
from lima_align.errors import LimaError
from lima_align.evaluate.parsers import (argmax_label, choice_probs, parse_likert, parse_pairwise, parse_rating,
                                         parse_safety)
from lima_align.evaluate.templates import PROMPTS_DIR, load_template

PROTOCOLS = ["absolute", "likert", "multiturn", "pairwise", "safety"]

PROMPTED = PROTOCOLS + list(RATING_ASPECTS)  # the judging protocols and the mix's rating prompts


@pytest.mark.parametrize("text, label", [
    ("Both fine, A more complete.\nVerdict: A", "A"),
    ("verdict: b", "B"),
    ("Verdict: neither", "tie"),
    ("**Verdict:** Answer B", "B"),
    ("Answer A is significantly better.", "A"),
    ("Neither is significantly better.", "tie"),
    ("Verdict: A\n...on reflection...\nVerdict: B", None),  # contradicting verdicts
    ("Answer A is significantly better. No wait, Answer B is significantly better.", None),
    ("I like A's answer but B has a point.", None),  # mentions both, no verdict: never guessed
    ("A", "A"), (" B.\n", "B"), ("Neither", "tie"),  # the verdict alone is unambiguous
    ("A or B", None),
    ("", None),
    (None, None),
])
def test_pairwise(text, label):
    assert parse_pairwise(text) == label


@pytest.mark.parametrize("text, label", [
    ("ok\nRating: Excellent", "excellent"), ("Rating: fail", "fail"), ("Pass.", "pass"),
    ("Rating: Pass\nRating: Fail", None), ("It passes, mostly excellent", None), ("garbage {", None)])
def test_rating(text, label):
    assert parse_rating(text) == label


@pytest.mark.parametrize("text, label", [("Safety: unsafe", "unsafe"), ("Safety: safe", "safe"),
                                         ("unsafe", "unsafe"), ("maybe safe maybe not", None)])
def test_safety(text, label):
    assert parse_safety(text) == label


@pytest.mark.parametrize("text, score", [
    ("The answer is relevant.\nIt lacks detail.\n3\n3", 3),
    ("reasoning...\n5", 5),
    ("Score: 6", 6),
    ("reasoning\n4\n5", None),  # the score and its repetition disagree
    ("It deserves a 7\n7", None),  # out of range
    ("1, 2, 3, 4, 5, 6", None),
    ("", None),
])
def test_likert(text, score):
    assert parse_likert(text) == score


def test_every_shipped_prompt_loads_and_renders_in_one_pass():
    names = sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml"))
    assert names == sorted(PROMPTED + [f"{p}-weighted" for p in PROMPTED])
    for name in names:
        t = load_template(name)
        assert t.name == name and t.version.endswith("-v1")
        values = {f: "{{answer}} <b>" for f in t.fields}
        text = t.render(**values)
        assert "{{answer}} <b>" in text  # an answer containing a placeholder is not substituted again
    assert "super-intelligent AI assistant" in load_template("pairwise").text


@pytest.mark.parametrize("protocol", PROMPTED)
def test_weighted_prompts_name_each_choice_token_and_keep_the_protocol_fields(protocol):
    plain, weighted = load_template(protocol), load_template(f"{protocol}-weighted")
    assert not plain.choices and weighted.fields == plain.fields and weighted.version != plain.version
    assert sorted(weighted.choice_map) == sorted(plain.labels)  # one verdict token per label of the protocol
    for token in weighted.choice_map.values():  # the prompt tells the judge which token to reply with
        assert token in weighted.text
    assert "single" in weighted.text.lower()


def test_pairwise_weighted_prompt_keeps_the_paper_instruction():
    t = load_template("pairwise-weighted")
    assert "super-intelligent AI assistant" in t.text and "Neither is significantly better" in t.text
    assert t.choice_map == {"A": "A", "B": "B", "tie": "C"}


def test_choices_must_be_distinct_tokens(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nversion: x-v1\ntemplate: t\nchoices: {A: 'A', B: 'A'}\n")
    with pytest.raises(LimaError, match="distinct"):
        load_template(bad)


CHOICES = {"A": "A", "B": "B", "tie": "C"}


def test_choice_probs_normalises_over_the_verdict_tokens_and_merges_spellings():
    logprobs = {"A": math.log(0.3), " A": math.log(0.1), "B": math.log(0.2), "The": math.log(0.35),
                "c": math.log(0.05)}  # "c" is not "C": case matters
    probs = choice_probs(logprobs, CHOICES)
    assert probs == pytest.approx({"A": 0.4 / 0.6, "B": 0.2 / 0.6, "tie": 0.0})
    assert sum(probs.values()) == pytest.approx(1.0) and argmax_label(probs) == "A"


def test_choice_probs_is_missing_when_no_verdict_token_is_there():
    assert choice_probs({"The": -0.1, "I": -2.0}, CHOICES) is None
    assert choice_probs(None, CHOICES) is None and choice_probs({}, CHOICES) is None
    assert choice_probs({"A": float("-inf")}, CHOICES) is None
    assert argmax_label(None) is None
