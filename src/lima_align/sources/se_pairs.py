"""One site's LIMA selection in one streaming pass: self-contained questions, their top answer, the answer rules.

Memory (why one pass is enough): answers may come before or after their question in ``Posts.xml``, so nothing
is decided until the end of the file. Meanwhile only compact per-post data stays in memory: for each question
that passed the question rules, ``(score, date, spool offset)``; the ids of rejected questions; and for each
question, its best answer so far among those reaching the minimum score ``(score, id, date, spool offset)``.
The raw texts (title and body of kept questions, body of the current best answer) go to a temporary spool file,
so memory grows with the number of questions kept, never with the dump size or its texts. At the end each
kept question's final top answer is cleaned and checked once; the best ``keep_per_site`` eligible pairs by
question score become examples (sampling never takes more than that many from one site).

Accounting: every question row ends up kept or rejected with exactly one reason; every answer row ends up in
exactly one outcome (``top_answer``, ``not_top_answer``, ``below_min_score``, ...).
"""

from __future__ import annotations

import hashlib
import heapq
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any, Callable

from lima_align.conversation import Example, provenance
from lima_align.curate.filters import answer_reason, question_reason
from lima_align.curate.html import html_to_text
from lima_align.sources.se_dump import QUESTION, DumpInput, iter_rows, parse_tags, read_answer, read_question

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


class _Spool:
    """Append-only temporary file of texts, addressed by (offset, length)."""

    def __init__(self, fh: IO[bytes]):
        self.fh = fh
        self.end = 0

    def put(self, text: str) -> tuple[int, int]:
        data = text.encode("utf-8", "surrogatepass")
        if self.fh.tell() != self.end:  # only after a get()
            self.fh.seek(self.end)
        self.fh.write(data)
        ref = (self.end, len(data))
        self.end += len(data)
        return ref

    def get(self, ref: tuple[int, int]) -> str:
        self.fh.seek(ref[0])
        return self.fh.read(ref[1]).decode("utf-8", "surrogatepass")


class _SiteState:
    """The streaming pass's compact state for one site."""

    def __init__(self, cfg: SelectionConfig, result: SiteResult, spool: _Spool):
        self.cfg, self.result, self.spool = cfg, result, spool
        self.kept: dict[int, tuple[int, str, tuple[int, int]]] = {}  # question id -> (score, date, ref)
        self.rejected_ids: set[int] = set()
        self.best: dict[int, tuple[int, int, str, tuple[int, int]]] = {}  # question id -> best answer

    def question(self, elem: Any) -> None:
        self.result.questions["considered"] += 1
        q = read_question(elem)
        reason = q if isinstance(q, str) else question_reason(q.title, q.body, q.closed)
        if reason is not None:
            self.result.rejected[reason] += 1
            if not isinstance(q, str):
                self.rejected_ids.add(q.id)
                if self.best.pop(q.id, None) is not None:
                    self.result.answers["question_rejected"] += 1
            return
        # Titles and tags cannot hold NUL (XML forbids it), so it separates the texts.
        self.kept[q.id] = (q.score, q.edited or q.created, self.spool.put(f"{q.title}\0{q.tags}\0{q.body}"))

    def answer(self, elem: Any) -> None:
        outcomes = self.result.answers
        outcomes["considered"] += 1
        a = read_answer(elem, self.cfg.min_score)
        if isinstance(a, str):
            outcomes[a] += 1
            return
        if a.parent in self.rejected_ids:
            outcomes["question_rejected"] += 1
            return
        current = self.best.get(a.parent)
        # Highest score wins; a tie goes to the older (lower id) answer.
        if current is not None and (current[0], -current[1]) > (a.score, -a.id):
            outcomes["not_top_answer"] += 1
            return
        if current is not None:
            outcomes["not_top_answer"] += 1
        self.best[a.parent] = (a.score, a.id, a.edited or a.created, self.spool.put(a.body))

    def _check_answer(self, raw_html: str) -> tuple[str, str | None]:
        cfg = self.cfg
        # Cleaning only removes characters (tags, entities, whitespace) save for list indentation and code
        # fences, which in practice never outweigh the tags they replace (a test checks this on real dumps):
        # raw HTML shorter than the minimum is too short, and is not cleaned (most answers stop here).
        if len(raw_html) < cfg.min_chars:
            return "", "answer_too_short"
        text = html_to_text(raw_html)
        return text, answer_reason(text, cfg.min_chars, cfg.max_chars, first_person=cfg.first_person,
                                   references=cfg.references)

    def finish(self, site: str, group: str) -> None:
        """Check each kept question's top answer; keep the best ``keep_per_site`` eligible pairs."""
        cfg, result = self.cfg, self.result
        heap: list[tuple[int, int, str, tuple]] = []
        for qid, (qscore, qdate, qref) in self.kept.items():
            best = self.best.pop(qid, None)
            if best is None:
                result.rejected["no_answer_min_score"] += 1
                continue
            result.answers["top_answer"] += 1
            text, reason = self._check_answer(self.spool.get(best[3]))
            if reason is not None:
                result.rejected[reason] += 1
                continue
            result.questions["kept"] += 1
            item = (qscore, -qid, text, (qdate, qref, best))
            if len(heap) < cfg.keep_per_site:
                heapq.heappush(heap, item)
            elif cfg.keep_per_site > 0:
                heapq.heappushpop(heap, item)
        if self.best:  # answers whose question never appeared in the dump
            result.answers["question_not_found"] += len(self.best)
        for qscore, negid, text, (qdate, qref, best) in sorted(heap, reverse=True):
            title, tags, body = self.spool.get(qref).split("\0", 2)
            pair = _Pair(site, group, -negid, qscore, title, body, qdate, best, text, parse_tags(tags))
            result.candidates.append(build_example(pair, cfg))


@dataclass
class _Pair:
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


def build_example(pair: _Pair, cfg: SelectionConfig) -> Example:
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


def select_site(dump: DumpInput, group: str, cfg: SelectionConfig,
                progress: Callable[[int], None] | None = None) -> SiteResult:
    """Read one site's dump and select its LIMA candidates (see the module docstring)."""
    label = f"{dump.path}:{dump.member}" if dump.member else str(dump.path)
    result = SiteResult(dump.site, group, label)
    with tempfile.TemporaryFile(prefix="lima-se-spool-") as fh:
        state = _SiteState(cfg, result, _Spool(fh))
        for kind, elem in iter_rows(dump, result.rows_by_type, progress):
            if kind == QUESTION:
                state.question(elem)
            else:
                state.answer(elem)
        state.finish(dump.site, group)
    return result
