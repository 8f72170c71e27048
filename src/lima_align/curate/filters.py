"""LIMA's Stack Exchange selection rules as pure functions: each returns ``None`` (pass) or a reason key.

Reason keys are stable strings (they are the keys of the audit report); :data:`REASONS` describes each one.
Question checks run on the raw HTML body (cheap regexes: they run on every question of a dump); answer checks
run on the cleaned text that would become the response, with code removed where a check concerns prose only.

"Self-contained" question (the paper gives no rule; ours, documented here): a question is kept unless it is
closed (``ClosedDate`` set), marked a duplicate, shows an image, is a link with (almost) no text of its own,
links to other posts of the site, or refers to the site or to other questions in words.
"""

from __future__ import annotations

import re

from lima_align.curate.html import strip_code

# Stack Exchange plants two fake posts in each dump (owner -1) to trace copies; they are not content.
PLANTED_POST_IDS = frozenset({1000000001, 1000000010})

REASONS = {
    "planted_post": "one of the two fake posts planted in every dump (Id 1000000001/1000000010, owner -1)",
    "missing_fields": "a question or answer row without Id, Score, Body (or Title, ParentId) or with a bad number",
    "question_duplicate_id": "an Id given to more than one question row of the dump (every such row is dropped)",
    "question_empty": "question with an empty title or body",
    "question_closed": "question closed (ClosedDate set)",
    "question_duplicate": "question marked as a duplicate",
    "question_image": "question body shows an image (not self-contained as text)",
    "question_link_only": "question body is (almost) only a link",
    "question_refers_to_posts": "question links to or mentions other posts, the site or Stack Exchange",
    "no_answer_min_score": "no answer reaches the minimum score (the top answer must have score >= min)",
    "answer_too_short": "top answer shorter than the minimum length (characters, after cleaning)",
    "answer_too_long": "top answer longer than the maximum length (characters, after cleaning)",
    "answer_first_person": "top answer written in the first person ('I', 'my', ...)",
    "answer_refers_to_others": "top answer refers to other answers, the question's author or the site",
}

_DUPLICATE = re.compile(r"possible duplicate|already has an? answers? here|\[duplicate\]|exact duplicate")
_LINK = re.compile(r"<a\b[^>]*>.*?</a>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_POST_LINK = re.compile(r"""href=["'][^"']*/(?:questions|q|a)/\d+""")
_QUESTION_REFERS = re.compile(
    r"\b(?:this site|this forum|stack ?exchange|stack ?overflow|other questions?|another question|"
    r"similar questions?|related questions?|linked questions?|previous questions?|same question)\b")
# Every match of _QUESTION_REFERS contains one of these: testing them first skips the regex for most bodies.
_QUESTION_KEYS = ("this site", "this forum", "stack exchange", "stackexchange", "stack overflow", "stackoverflow",
                  "other question", "another question", "similar question", "related question",
                  "linked question", "previous question", "same question")
# First person: "I" (which also covers I'm, I've, I'd, I'll: the apostrophe ends the word) or me/my/mine/myself in
# any case; two simple patterns search about twice as fast as their alternation.
_FIRST_PERSON_I = re.compile(r"\bI\b")
_FIRST_PERSON_ME = re.compile(r"(?i:\b(?:me|my|mine|myself)\b)")
_ANSWER_REFERS = re.compile(
    r"\b(?:as (?:already |previously )?(?:mentioned|stated|noted|said|pointed out)|as others|"
    r"other answers?|another answer|this answer|that answer|the answers? (?:above|below)|"
    r"(?:above|below|previous|accepted|other) answers?|stack ?exchange|stack ?overflow|this site|"
    r"this question|the op|op['’]s|the poster)\b|(?<![\w.])@\w",
    re.IGNORECASE)
# Every match of _ANSWER_REFERS in an ASCII text contains one of these, lower-cased: most answers skip the regex.
_ANSWER_KEYS = ("mentioned", "stated", "noted", "said", "pointed out", "as others", "answer", "stack", "this site",
                "this question", "the op", "op'", "op’", "the poster", "@")
MIN_OWN_TEXT = 20  # characters of text outside links for a body not to count as "only a link"


def question_reason(title: str, body_html: str, closed: bool) -> str | None:
    """Why a question is not a self-contained prompt, or None."""
    if not title.strip() or not body_html.strip():
        return "question_empty"
    if closed:
        return "question_closed"
    # Every question of a dump passes here: cheap substring tests on the lower-cased text gate the regexes.
    low, title_low = body_html.lower(), title.lower()
    if ("duplicate" in low or "already has" in low or "duplicate" in title_low) and (
            _DUPLICATE.search(title_low) or _DUPLICATE.search(low)):
        return "question_duplicate"
    if "<img" in low:
        return "question_image"
    if "<a" in low and len(_TAG.sub("", _LINK.sub("", body_html)).strip()) < MIN_OWN_TEXT:
        return "question_link_only"
    if ("/q" in low or "/a/" in low) and _POST_LINK.search(low):
        return "question_refers_to_posts"
    if any(k in low or k in title_low for k in _QUESTION_KEYS) and (
            _QUESTION_REFERS.search(title_low) or _QUESTION_REFERS.search(low)):
        return "question_refers_to_posts"
    return None


def score_reason(best_answer_score: int | None, min_score: int) -> str | None:
    """The top answer must exist and score at least ``min_score``."""
    if best_answer_score is None or best_answer_score < min_score:
        return "no_answer_min_score"
    return None


def length_reason(text: str, min_chars: int, max_chars: int) -> str | None:
    """Answer length bounds, in characters of the cleaned text."""
    if len(text) < min_chars:
        return "answer_too_short"
    if len(text) > max_chars:
        return "answer_too_long"
    return None


def first_person_reason(text: str, *, prose: str | None = None) -> str | None:
    """First-person prose ("I", "my", "me", ...); code is not prose and is ignored."""
    prose = strip_code(text) if prose is None else prose
    return "answer_first_person" if _FIRST_PERSON_I.search(prose) or _FIRST_PERSON_ME.search(prose) else None


def reference_reason(text: str, *, prose: str | None = None) -> str | None:
    """Prose that refers to other answers, the asker or the site ("as mentioned", "stack exchange", ...)."""
    prose = strip_code(text) if prose is None else prose
    # The prescreen only where case folding is plain (ASCII): re.IGNORECASE matches some non-ASCII letters (İ, K)
    # to ASCII ones in ways casefold does not.
    if prose.isascii() and not any(key in prose.lower() for key in _ANSWER_KEYS):
        return None
    return "answer_refers_to_others" if _ANSWER_REFERS.search(prose) else None


def answer_reason(text: str, min_chars: int, max_chars: int, *, first_person: bool = True,
                  references: bool = True) -> str | None:
    """The first answer rule ``text`` breaks, in the paper's order (length, first person, references)."""
    reason = length_reason(text, min_chars, max_chars)
    if reason is not None or not (first_person or references):
        return reason
    prose = strip_code(text)
    if first_person:
        reason = first_person_reason(text, prose=prose)
    if reason is None and references:
        reason = reference_reason(text, prose=prose)
    return reason
