"""One site's LIMA selection: self-contained questions, their top answer, the answer rules; on disk, in flat memory.

Answers may come before or after their question in ``Posts.xml``, so nothing is decided until the whole file
is read. The pass over the rows (:func:`scan_span`, one per byte range of the file when several processes read
it) keeps no per-post state in memory: each question that passed the question rules, each rejected question's
id, and each answer reaching the minimum score become a compact record in a SQLite file (buffered, no journal),
and the raw texts (title, tags and body of kept questions; the body of answers long enough to be kept) go to
an append-only spool file. :func:`finish_site` then reads the questions and the answers sorted by question id
(SQLite sorts on disk, within a bounded page cache) and joins them in one merge: each kept question's top
answer (highest score, a tie going to the lower id) is cleaned and checked once, and the best
``keep_per_site`` eligible pairs by question score become examples (sampling never takes more than that many
from one site). Peak memory is the same at 1 GB or 100 GB of XML; the temporary disk used is about the size of
the kept texts.

The result does not depend on how the file was cut or on the order of its rows: the single-process run and a
run over N ranges give the same examples and the same counts.

Accounting: every question row ends up kept or rejected with exactly one reason; every answer row ends up in
exactly one outcome (``top_answer``, ``not_top_answer``, ``below_min_score``, ``question_rejected`` for every
answer of a rejected question, ``question_not_found`` for every answer whose question is not in the dump, ...).
"""

from __future__ import annotations

import hashlib
import heapq
import sqlite3
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator

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


BATCH = 4096  # records per SQLite insert
CACHE_KIB = 65_536  # SQLite page cache per connection (sorting spills to disk past it)
_SCHEMA = """
CREATE TABLE q (id INTEGER, kept INTEGER, score INTEGER, date TEXT, src INTEGER, off INTEGER, len INTEGER);
CREATE TABLE a (parent INTEGER, score INTEGER, id INTEGER, date TEXT, src INTEGER, off INTEGER, len INTEGER);
"""


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(f"PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=FILE; "
                     f"PRAGMA cache_size=-{CACHE_KIB};")
    return db


@dataclass
class SpanResult:
    """What the pass over one byte range of a site's file read: counts, and where its records and texts are."""

    index: int
    db: str
    spool: str
    rows_by_type: dict[str, int] = field(default_factory=dict)
    questions: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    answers: Counter = field(default_factory=Counter)


class _SpanState:
    """The pass's records for one byte range: SQLite rows in batches, texts appended to the spool."""

    def __init__(self, cfg: SelectionConfig, result: SpanResult):
        self.cfg, self.result = cfg, result
        self.db = _connect(Path(result.db))
        self.db.executescript(_SCHEMA)
        self.spool = open(result.spool, "wb", buffering=1 << 20)
        self.end = 0
        self.qrows: list[tuple] = []
        self.arows: list[tuple] = []

    def put(self, text: str) -> tuple[int, int]:
        data = text.encode("utf-8", "surrogatepass")
        ref = (self.end, len(data))
        self.spool.write(data)
        self.end += len(data)
        return ref

    def question(self, elem: Any) -> None:
        result = self.result
        result.questions["considered"] += 1
        q = read_question(elem)
        if isinstance(q, str):
            result.rejected[q] += 1
            return
        reason = question_reason(q.title, q.body, q.closed)
        if reason is not None:
            result.rejected[reason] += 1
            self.qrows.append((q.id, 0, q.score, "", 0, 0, 0))
        else:
            # Titles and tags cannot hold NUL (XML forbids it), so it separates the texts.
            off, n = self.put(f"{q.title}\0{q.tags}\0{q.body}")
            self.qrows.append((q.id, 1, q.score, q.edited or q.created, result.index, off, n))
        if len(self.qrows) >= BATCH:
            self.flush()

    def answer(self, elem: Any) -> None:
        outcomes = self.result.answers
        outcomes["considered"] += 1
        a = read_answer(elem, self.cfg.min_score)
        if isinstance(a, str):
            outcomes[a] += 1
            return
        # Raw HTML shorter than the minimum is too short whatever it cleans to (see _check_answer): its text is
        # never needed, only that it exists (it may still be the top answer, which then fails the length rule).
        off, n = self.put(a.body) if len(a.body) >= self.cfg.min_chars else (-1, 0)
        self.arows.append((a.parent, a.score, a.id, a.edited or a.created, self.result.index, off, n))
        if len(self.arows) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self.qrows:
            self.db.executemany("INSERT INTO q VALUES (?,?,?,?,?,?,?)", self.qrows)
            self.qrows.clear()
        if self.arows:
            self.db.executemany("INSERT INTO a VALUES (?,?,?,?,?,?,?)", self.arows)
            self.arows.clear()

    def close(self) -> None:
        self.flush()
        self.db.close()
        self.spool.close()


def scan_span(dump: DumpInput, cfg: SelectionConfig, workdir: str, index: int = 0,
              span: tuple[int, int] | None = None, progress: Callable[[int], None] | None = None) -> SpanResult:
    """Read the rows of one byte range (or the whole dump) into ``workdir``: the first half of a site's run."""
    result = SpanResult(index, str(Path(workdir) / f"span-{index}.db"), str(Path(workdir) / f"span-{index}.spool"))
    state = _SpanState(cfg, result)
    try:
        for kind, elem in iter_rows(dump, result.rows_by_type, progress, span):
            if kind == QUESTION:
                state.question(elem)
            else:
                state.answer(elem)
    finally:
        state.close()
    return result


def _merged_db(spans: list[SpanResult], workdir: str) -> sqlite3.Connection:
    """One connection over every range's records (the single range's own file when there is one)."""
    if len(spans) == 1:
        return _connect(Path(spans[0].db))
    db = _connect(Path(workdir) / "site.db")
    db.executescript(_SCHEMA)
    for i, span in enumerate(spans):
        db.execute(f"ATTACH DATABASE ? AS s{i}", (span.db,))
        db.execute(f"INSERT INTO q SELECT * FROM s{i}.q")
        db.execute(f"INSERT INTO a SELECT * FROM s{i}.a")
        db.execute(f"DETACH DATABASE s{i}")
    return db


def _answer_groups(db: sqlite3.Connection) -> Iterator[tuple[int, list[tuple]]]:
    """``(question id, its answers best first)`` for every question id that has answers, ascending."""
    rows = db.execute("SELECT parent, score, id, date, src, off, len FROM a ORDER BY parent, score DESC, id")
    group: list[tuple] = []
    for row in rows:
        if group and row[0] != group[0][0]:
            yield group[0][0], group
            group = []
        group.append(row)
    if group:
        yield group[0][0], group


def finish_site(site: str, group: str, label: str, cfg: SelectionConfig, spans: list[SpanResult],
                workdir: str) -> SiteResult:
    """Join the questions with their answers, check each kept question's top answer, keep the best pairs."""
    result = SiteResult(site, group, label)
    for span in spans:  # the ranges' counts add up
        for kind, n in span.rows_by_type.items():
            result.rows_by_type[kind] = result.rows_by_type.get(kind, 0) + n
        result.questions.update(span.questions)
        result.rejected.update(span.rejected)
        result.answers.update(span.answers)
    spools = {span.index: open(span.spool, "rb") for span in spans}
    db = _merged_db(spans, workdir)
    try:
        heap = _join(db, spools, cfg, result)
        for qscore, negid, text, (qdate, qref, best) in sorted(heap, reverse=True):
            title, tags, body = _read(spools, qref).split("\0", 2)
            pair = _Pair(site, group, -negid, qscore, title, body, qdate, best, text, parse_tags(tags))
            result.candidates.append(build_example(pair, cfg))
    finally:
        db.close()
        for fh in spools.values():
            fh.close()
    return result


def _read(spools: dict[int, IO[bytes]], ref: tuple[int, int, int]) -> str:
    src, off, n = ref
    fh = spools[src]
    fh.seek(off)
    return fh.read(n).decode("utf-8", "surrogatepass")


def _join(db: sqlite3.Connection, spools: dict[int, IO[bytes]], cfg: SelectionConfig,
          result: SiteResult) -> list[tuple]:
    """The merge of questions and answer groups, both by id; returns the heap of the best eligible pairs."""
    outcomes, heap = result.answers, []
    answers = _answer_groups(db)
    pending = next(answers, None)
    questions = db.execute("SELECT id, kept, score, date, src, off, len FROM q ORDER BY id")
    for qid, kept, qscore, qdate, qsrc, qoff, qlen in questions:
        while pending is not None and pending[0] < qid:  # answers whose question is not in the dump
            outcomes["question_not_found"] += len(pending[1])
            pending = next(answers, None)
        group = pending[1] if pending is not None and pending[0] == qid else None
        if group is not None:
            pending = next(answers, None)
        if not kept:
            if group:
                outcomes["question_rejected"] += len(group)
            continue
        if not group:
            result.rejected["no_answer_min_score"] += 1
            continue
        outcomes["top_answer"] += 1
        if len(group) > 1:
            outcomes["not_top_answer"] += len(group) - 1
        _, ascore, aid, adate, asrc, aoff, alen = group[0]
        text, reason = _check_answer(cfg, "" if aoff < 0 else _read(spools, (asrc, aoff, alen)))
        if reason is not None:
            result.rejected[reason] += 1
            continue
        result.questions["kept"] += 1
        item = (qscore, -qid, text, (qdate, (qsrc, qoff, qlen), (ascore, aid, adate, None)))
        if len(heap) < cfg.keep_per_site:
            heapq.heappush(heap, item)
        elif cfg.keep_per_site > 0:
            heapq.heappushpop(heap, item)
    while pending is not None:
        outcomes["question_not_found"] += len(pending[1])
        pending = next(answers, None)
    return heap


def _check_answer(cfg: SelectionConfig, raw_html: str) -> tuple[str, str | None]:
    # Cleaning only removes characters (tags, entities, whitespace) save for list indentation and code
    # fences, which in practice never outweigh the tags they replace (a test checks this on real dumps):
    # raw HTML shorter than the minimum is too short, and is not cleaned (most answers stop here).
    if len(raw_html) < cfg.min_chars:
        return "", "answer_too_short"
    text = html_to_text(raw_html)
    return text, answer_reason(text, cfg.min_chars, cfg.max_chars, first_person=cfg.first_person,
                               references=cfg.references)


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
    """Read one site's dump in this process and select its LIMA candidates (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="lima-se-") as workdir:
        span = scan_span(dump, cfg, workdir, 0, None, progress)
        return finish_site(dump.site, group, dump_label(dump), cfg, [span], workdir)


def dump_label(dump: DumpInput) -> str:
    """How reports name a dump: the file, or ``archive:member``."""
    return f"{dump.path}:{dump.member}" if dump.member else str(dump.path)
