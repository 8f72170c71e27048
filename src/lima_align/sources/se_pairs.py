"""The LIMA rules for one site's Stack Exchange pairs: the selection config, a site's result and counts, the
answer check, the seeded prompt coin, licences, and the example built from a selected pair (with provenance).
The pass over a dump that finds the pairs is :mod:`lima_align.sources.se_store`."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lima_align.conversation import Example, provenance
from lima_align.curate.filters import answer_reason
from lima_align.curate.html import html_to_text

SOURCE = "stackexchange"
# Stack Exchange's licence cut-overs: content posted or last edited before a date carries the older version.
LICENSE_CUTOVERS = (("2011-04-08", "CC BY-SA 2.5"), ("2018-05-02", "CC BY-SA 3.0"))
LATEST_LICENSE = "CC BY-SA 4.0"


@dataclass
class SelectionConfig:
    """The paper's Stack Exchange selection rules; every default is the paper's."""

    min_score: int = 10  # the top answer's minimum score
    min_chars: int = 1200  # answer length bounds, characters of the cleaned text
    max_chars: int = 4096
    first_person: bool = True  # drop first-person answers
    references: bool = True  # drop answers that refer to other answers or the site
    title_prob: float = 0.5  # probability that the prompt is the title (else the body)
    seed: int = 0
    keep_per_site: int = 200  # eligible pairs kept per site, best question score first


@dataclass
class SiteResult:
    """What one site's pass read, rejected and kept."""

    site: str
    group: str
    input: str
    rows_by_type: dict[str, int] = field(default_factory=dict)
    questions: Counter = field(default_factory=Counter)  # considered, kept
    rejected: Counter = field(default_factory=Counter)  # question-level rejections by reason
    answers: Counter = field(default_factory=Counter)  # considered and one outcome per answer row
    candidates: list[Example] = field(default_factory=list)

    def to_report(self) -> dict[str, Any]:
        return {"group": self.group, "input": self.input, "rows_by_type": dict(sorted(self.rows_by_type.items())),
                "questions": {"considered": self.questions["considered"], "kept": self.questions["kept"],
                              "rejected": dict(self.rejected.most_common())},
                "answers": {"considered": self.answers["considered"],
                            "outcomes": {k: v for k, v in self.answers.most_common() if k != "considered"}},
                "candidates_returned": len(self.candidates)}


def license_for(date: str) -> str:
    """The CC BY-SA version of content posted or last edited at ``date`` (ISO 8601)."""
    for cutover, name in LICENSE_CUTOVERS:
        if date < cutover:
            return name
    return LATEST_LICENSE


def prompt_is_title(seed: int, site: str, question_id: int, title_prob: float) -> bool:
    """The seeded coin: a hash of (seed, site, question id), so it does not depend on order or workers."""
    digest = hashlib.blake2b(f"{seed}:{site}:{question_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < title_prob


def check_answer(cfg: SelectionConfig, raw_html: str) -> tuple[str, str | None]:
    """The cleaned text of a top answer and the first answer rule it breaks (None: it passes)."""
    # Cleaning only removes characters (tags, entities, whitespace) save for list indentation and code
    # fences, which in practice never outweigh the tags they replace (a test checks this on real dumps):
    # raw HTML shorter than the minimum is too short, and is not cleaned (most answers stop here).
    if len(raw_html) < cfg.min_chars:
        return "", "answer_too_short"
    text = html_to_text(raw_html)
    return text, answer_reason(text, cfg.min_chars, cfg.max_chars, first_person=cfg.first_person,
                               references=cfg.references)


@dataclass
class SelectedPair:
    site: str
    group: str
    question_id: int
    question_score: int
    title: str
    body_html: str
    question_date: str
    best: tuple  # (score, id, date, ref) of the top answer
    answer_text: str
    tags: tuple[str, ...]


def build_example(pair: SelectedPair, cfg: SelectionConfig) -> Example:
    """The conversation example of a selected pair, with its provenance."""
    answer_score, answer_id, answer_date, _ = pair.best
    field_name = "title" if prompt_is_title(cfg.seed, pair.site, pair.question_id, cfg.title_prob) else "body"
    prompt = pair.title.strip() if field_name == "title" else html_to_text(pair.body_html)
    if not prompt:  # a body that cleans to nothing (all markup) falls back to the title
        field_name, prompt = "title", pair.title.strip()
    meta = provenance(pair.site, license_for(max(pair.question_date, answer_date)),
                      url=f"https://{pair.site}/questions/{pair.question_id}",
                      source_id=f"{pair.site}/a/{answer_id}", prompt_field=field_name)
    meta.update(site=pair.site, group=pair.group, question_id=pair.question_id, answer_id=answer_id,
                question_score=pair.question_score, answer_score=answer_score, tags=list(pair.tags),
                answer_url=f"https://{pair.site}/a/{answer_id}",
                question_license=license_for(pair.question_date), answer_license=license_for(answer_date))
    return Example(id=f"se-{pair.site}-{pair.question_id}", conversations=[prompt, pair.answer_text],
                   source=SOURCE, meta=meta)
