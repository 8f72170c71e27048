"""Parse judge replies into labels. Pure functions: text in, label or ``None`` out.

``None`` means missing: the reply did not say clearly (no verdict line, or contradicting ones). The caller keeps
the raw text beside it; nothing here guesses (e.g. a reply that names both A and B without a verdict line is
missing, not the first one mentioned).

The weighted verdict mode reads no text: :func:`choice_probs` turns the log-probabilities of the reply's first
token (an endpoint's ``top_logprobs``, or the local judge's) into a distribution over a template's choices.
"""

from __future__ import annotations

import math
import re
from typing import Mapping

_PAIRWISE_LINE = re.compile(r"verdict\s*[:\-]\s*\**\s*\[?\s*(answer\s+)?(a|b|neither|tie|none)\b", re.I)
_PAIRWISE_PHRASES = {
    "A": re.compile(r"answer\s+a\s+is\s+significantly\s+better", re.I),
    "B": re.compile(r"answer\s+b\s+is\s+significantly\s+better", re.I),
    "tie": re.compile(r"neither\s+(answer\s+)?is\s+significantly\s+better", re.I),
}
_RATING_LINE = re.compile(r"rating\s*[:\-]\s*\**\s*(fail|pass|excellent)\b", re.I)
_SAFETY_LINE = re.compile(r"safety\s*[:\-]\s*\**\s*(safe|unsafe)\b", re.I)
_SCORE_LINE = re.compile(r"^\W*(?:score\s*[:\-]\s*)?([1-6])\W*$", re.I)


def parse_pairwise(text: str | None) -> str | None:
    """'A', 'B' or 'tie' (neither significantly better) as the judge said it, in POSITION terms."""
    if not text:
        return None
    verdicts = {m.group(2).lower() for m in _PAIRWISE_LINE.finditer(text)}
    if len(verdicts) == 1:
        (v,) = verdicts
        return {"a": "A", "b": "B"}.get(v, "tie")
    if len(verdicts) > 1:
        return None  # contradicting verdict lines
    # No verdict line: accept the paper's own option sentences only when exactly one of them appears, or a
    # reply that is the verdict alone ("A", "B.", "neither").
    named = [label for label, pat in _PAIRWISE_PHRASES.items() if pat.search(text)]
    if len(named) == 1:
        return named[0]
    bare = _bare_label(text, ("a", "b", "neither", "tie"))
    return None if len(named) > 1 or bare is None else {"a": "A", "b": "B"}.get(bare, "tie")


def parse_rating(text: str | None) -> str | None:
    """'fail', 'pass' or 'excellent' from a ``Rating: ...`` line (the last one; contradictions are missing)."""
    return _single_label(_RATING_LINE, text) or _bare_label(text, ("fail", "pass", "excellent"))


def parse_safety(text: str | None) -> str | None:
    """'safe' or 'unsafe' from a ``Safety: ...`` line."""
    return _single_label(_SAFETY_LINE, text) or _bare_label(text, ("safe", "unsafe"))


def parse_likert(text: str | None) -> int | None:
    """The 1-6 score: the last non-empty line that is only a digit 1-6 (or ``Score: N``).

    The prompt asks for the score on its own line and then repeated; when the two last score lines disagree the
    score is missing.
    """
    if not text:
        return None
    scores = [int(m.group(1)) for line in text.splitlines() if (m := _SCORE_LINE.match(line.strip()))]
    if not scores:
        return None
    if len(scores) >= 2 and scores[-1] != scores[-2]:
        return None
    return scores[-1]


def _single_label(pattern: re.Pattern, text: str | None) -> str | None:
    if not text:
        return None
    labels = {m.group(1).lower() for m in pattern.finditer(text)}
    return labels.pop() if len(labels) == 1 else None


def _bare_label(text: str | None, labels: tuple[str, ...]) -> str | None:
    """A reply that is only the label itself ("Pass", "excellent."): unambiguous, so accepted."""
    if not text:
        return None
    word = text.strip().strip(".!*\"' ").lower()
    return word if word in labels else None


def choice_probs(logprobs: Mapping[str, float] | None, choices: Mapping[str, str]) -> dict[str, float] | None:
    """The distribution over the labels of ``choices`` (label -> reply token) given the log-probabilities of the
    candidate first tokens (token text -> logprob), normalised over the verdict tokens.

    A token counts for a choice when its text with surrounding spaces stripped is the choice's token, so "A" and
    " A" (tokenizers spell a word with or without its leading space) both count for A. A choice absent from the
    logprobs (outside an endpoint's top-K) gets 0; when none is present the verdict is missing (``None``).
    """
    if not logprobs:
        return None
    mass = {label: 0.0 for label in choices}
    by_token = {token: label for label, token in choices.items()}
    for token, logprob in logprobs.items():
        label = by_token.get(token.strip())
        if label is not None and logprob is not None and math.isfinite(logprob):
            mass[label] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0:
        return None
    return {label: m / total for label, m in mass.items()}


def argmax_label(probs: Mapping[str, float] | None) -> str | None:
    """The most probable label (the first listed among exact ties), or ``None`` for a missing distribution."""
    if not probs:
        return None
    return max(probs, key=lambda label: probs[label])


PARSERS = {"pairwise": parse_pairwise, "absolute": parse_rating, "safety": parse_safety,
           "likert": parse_likert, "multiturn": parse_rating}
