"""Parsers: scripted judge replies, including the ambiguous ones that must be recorded missing."""

import pytest

from lima_align.evaluate.parsers import parse_likert, parse_pairwise, parse_rating, parse_safety
from lima_align.evaluate.templates import PROMPTS_DIR, load_template


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
    assert names == ["absolute", "likert", "multiturn", "pairwise", "safety"]
    for name in names:
        t = load_template(name)
        assert t.name == name and t.version.endswith("-v1")
        values = {f: "{{answer}} <b>" for f in t.fields}
        text = t.render(**values)
        assert "{{answer}} <b>" in text  # an answer containing a placeholder is not substituted again
    assert "super-intelligent AI assistant" in load_template("pairwise").text
