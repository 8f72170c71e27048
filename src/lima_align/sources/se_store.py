"""One site's LIMA selection on disk, in flat memory: self-contained questions, their top answer, the answer rules.

Answers may come before or after their question in ``Posts.xml``, so nothing is decided until the whole file
is read. The pass over the rows (:func:`scan_span`, one per byte range of the file when several processes read
it) keeps no per-post state in memory: each question and each answer reaching the minimum score become a
compact record in a SQLite file (batched inserts, no journal), and the raw texts (title, tags and body of the
questions; the body of answers long enough to be kept) go to an append-only spool file. :func:`join_part` then
reads the questions and the answers sorted by question id (SQLite sorts on disk, within a bounded page cache)
and joins them in one merge: the question rules run on each question that has an answer reaching the minimum
score (the others are ``no_answer_min_score`` without being read), and its top answer (highest score, a tie
going to the lower id) is cleaned and checked once; the join can be cut into question-id ranges run in
parallel. :func:`finish_site` adds the parts up, and the best ``keep_per_site`` eligible pairs by question score
become examples (sampling never takes more than that many from one site). Peak memory is the same at 1 GB or
100 GB of XML; the temporary disk used is about the size of the questions' texts.

The result does not depend on how the file was cut or on the order of its rows: the single-process run and a
run over N ranges give the same examples and the same counts.

Accounting: every question row ends up kept or rejected with exactly one reason; every answer row ends up in
exactly one outcome (``top_answer``, ``not_top_answer``, ``below_min_score``, ``question_rejected`` for every
answer of a rejected question, ``question_not_found`` for every answer whose question is not in the dump, ...).
"""

from __future__ import annotations

import heapq
import sqlite3
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from lima_align.curate.filters import question_reason
from lima_align.sources.se_dump import DumpInput, dump_label, parse_tags, read_answer, read_question, scan_rows
from lima_align.sources.se_pairs import SelectedPair, SelectionConfig, SiteResult, build_example, check_answer

BATCH = 4096  # records per SQLite insert
# SQLite page cache (KiB): a range's writer needs few pages (rows are appended); the join's sorts share one budget
# across their connections (two per range), spilling to temporary files past it, so memory stays flat.
WRITE_CACHE_KIB = 8_192
SORT_CACHE_KIB = 32_768
_SCHEMA = """
CREATE TABLE q (id INTEGER, closed INTEGER, score INTEGER, date TEXT, src INTEGER, off INTEGER, len INTEGER);
CREATE TABLE a (parent INTEGER, score INTEGER, id INTEGER, date TEXT, src INTEGER, off INTEGER, len INTEGER);
"""


def _connect(path: Path, cache_kib: int = WRITE_CACHE_KIB) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(f"PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=FILE; "
                     f"PRAGMA cache_size=-{max(1024, cache_kib)};")
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
        self.below = 0  # answers below the minimum score
        self.arows: list[tuple] = []

    def put(self, text: str) -> tuple[int, int]:
        data = text.encode("utf-8", "surrogatepass")
        ref = (self.end, len(data))
        self.spool.write(data)
        self.end += len(data)
        return ref

    def question(self, elem: Any) -> None:
        q = read_question(elem, owners=False)
        if isinstance(q, str):
            self.result.rejected[q] += 1
            return
        # Titles and tags cannot hold NUL (XML forbids it), so it separates the texts. The question rules run in
        # the join, only on questions with an answer reaching the minimum score (most questions have none).
        off, n = self.put(f"{q.title}\0{q.tags}\0{q.body}")
        self.qrows.append((q.id, int(q.closed), q.score, q.edited or q.created, self.result.index, off, n))
        if len(self.qrows) >= BATCH:
            self.flush()

    def answer(self, elem: Any) -> None:
        try:  # the fast path of most answers: below the minimum score, nothing else is read
            below = int(elem.get("Score")) < self.cfg.min_score
        except (TypeError, ValueError):
            below = False  # read_answer names the problem
        if below:
            self.below += 1
            return
        a = read_answer(elem, self.cfg.min_score, owners=False)
        if isinstance(a, str):
            self.result.answers[a] += 1
            return
        # Raw HTML shorter than the minimum is too short whatever it cleans to (see check_answer): its text is
        # never needed, only that it exists (it may still be the top answer, which then fails the length rule).
        off, n = self.put(a.body) if len(a.body) >= self.cfg.min_chars else (-1, 0)
        self.arows.append((a.parent, a.score, a.id, a.edited or a.created, self.result.index, off, n))
        if len(self.arows) >= BATCH:
            self.flush()

    def flush(self) -> None:
        self.db.execute("BEGIN")  # one transaction per batch (autocommit would commit every row)
        if self.qrows:
            self.db.executemany("INSERT INTO q VALUES (?,?,?,?,?,?,?)", self.qrows)
            self.qrows.clear()
        if self.arows:
            self.db.executemany("INSERT INTO a VALUES (?,?,?,?,?,?,?)", self.arows)
            self.arows.clear()
        self.db.execute("COMMIT")

    def close(self) -> None:
        if self.below:
            self.result.answers["below_min_score"] += self.below
            self.below = 0
        try:
            self.flush()
        finally:
            self.db.close()
            self.spool.close()


def scan_span(dump: DumpInput, cfg: SelectionConfig, workdir: str, index: int = 0,
              span: tuple[int, int] | None = None, progress: Callable[[int], None] | None = None) -> SpanResult:
    """Read the rows of one byte range (or the whole dump) into ``workdir``: the first half of a site's run."""
    result = SpanResult(index, str(Path(workdir) / f"span-{index}.db"), str(Path(workdir) / f"span-{index}.spool"))
    state = _SpanState(cfg, result)
    try:
        scan_rows(dump, result.rows_by_type, state.question, state.answer, progress, span)
    finally:
        state.close()
    result.questions["considered"] = result.rows_by_type.get("1", 0)
    result.answers["considered"] = result.rows_by_type.get("2", 0)
    return result


Bounds = tuple[int | None, int | None]  # question ids [low, high) of one part of the join; None: unbounded


@dataclass
class JoinPart:
    """The join's outcome for the questions of one id range: counts, and the best eligible pairs found."""

    rejected: Counter = field(default_factory=Counter)
    answers: Counter = field(default_factory=Counter)
    kept: int = 0
    heap: list[tuple] = field(default_factory=list)


def id_parts(spans: list[SpanResult], parts: int) -> list[Bounds]:
    """``parts`` question-id ranges (by value, between the smallest and largest id) covering every id."""
    lows, highs = [], []
    for span in spans:
        db = _connect(Path(span.db))
        try:
            low, high = db.execute("SELECT min(id), max(id) FROM q").fetchone()
        finally:
            db.close()
        if low is not None:
            lows.append(low)
            highs.append(high)
    if parts <= 1 or not lows or max(highs) - min(lows) < parts:
        return [(None, None)]
    low, width = min(lows), (max(highs) - min(lows) + 1) / parts
    cuts = [low + int(width * i) for i in range(1, parts)]
    return list(zip([None, *cuts], [*cuts, None]))


def _range(column: str, bounds: Bounds) -> tuple[str, tuple]:
    low, high = bounds
    terms = [(f"{column} >= ?", low) if low is not None else None, (f"{column} < ?", high) if high is not None else None]
    terms = [t for t in terms if t is not None]
    return (" WHERE " + " AND ".join(t[0] for t in terms) if terms else ""), tuple(t[1] for t in terms)


def _sorted_rows(spans: list[SpanResult], sql: str, args: tuple, key: Callable | None) -> Iterator[tuple]:
    """The rows of every range's database, merged in sort order (each database sorts its own on disk)."""
    dbs: list[sqlite3.Connection] = []
    try:
        for span in spans:
            dbs.append(_connect(Path(span.db), SORT_CACHE_KIB // (2 * len(spans))))
        yield from heapq.merge(*(db.execute(sql, args) for db in dbs), key=key)
    finally:
        for db in dbs:
            db.close()


def _answer_groups(spans: list[SpanResult], bounds: Bounds, outcomes: Counter) -> Iterator[tuple[int, list[tuple]]]:
    """``(question id, its answers best first)`` for every question id in ``bounds`` that has answers. An answer Id
    repeated under one question drops every such row (``duplicate_id``): which would win depends on order."""
    where, args = _range("parent", bounds)
    rows = _sorted_rows(spans, f"SELECT parent, score, id, date, src, off, len FROM a{where} "
                               "ORDER BY parent, score DESC, id", args, key=lambda r: (r[0], -r[1], r[2]))
    for parent, grouped in groupby(rows, key=itemgetter(0)):
        group = list(grouped)
        if len(group) > 1 and len({row[2] for row in group}) < len(group):
            seen = Counter(row[2] for row in group)
            outcomes["duplicate_id"] += sum(n for n in seen.values() if n > 1)
            group = [row for row in group if seen[row[2]] == 1]
        if group:
            yield parent, group


def join_part(cfg: SelectionConfig, spans: list[SpanResult], bounds: Bounds = (None, None)) -> JoinPart:
    """Join the questions of ``bounds`` with their answers: the question rules on those with an answer reaching
    the minimum score, then each one's top answer (cleaned, checked); keeps the best ``keep_per_site`` pairs."""
    part = JoinPart()
    outcomes, heap = part.answers, part.heap
    answers = _answer_groups(spans, bounds, outcomes)
    where, args = _range("id", bounds)
    questions = _sorted_rows(spans, f"SELECT id, closed, score, date, src, off, len FROM q{where} ORDER BY id",
                             args, key=None)
    spools: dict[int, IO[bytes]] = {}
    try:
        spools.update((span.index, open(span.spool, "rb")) for span in spans)
        pending = next(answers, None)
        for qid, rows in groupby(questions, key=itemgetter(0)):
            _, closed, qscore, qdate, qsrc, qoff, qlen = next(rows)
            twins = sum(1 for _ in rows)  # a real dump never repeats an Id; which row wins must not depend on order
            while pending is not None and pending[0] < qid:  # answers whose question is not in the dump
                outcomes["question_not_found"] += len(pending[1])
                pending = next(answers, None)
            if twins:
                part.rejected["question_duplicate_id"] += twins + 1
                if pending is not None and pending[0] == qid:
                    outcomes["question_rejected"] += len(pending[1])
                    pending = next(answers, None)
                continue
            if pending is None or pending[0] != qid:
                part.rejected["no_answer_min_score"] += 1
                continue
            group = pending[1]
            pending = next(answers, None)
            title, _, body = _read(spools, (qsrc, qoff, qlen)).split("\0", 2)
            reason = question_reason(title, body, bool(closed))
            if reason is not None:
                part.rejected[reason] += 1
                outcomes["question_rejected"] += len(group)
                continue
            outcomes["top_answer"] += 1
            if len(group) > 1:
                outcomes["not_top_answer"] += len(group) - 1
            _, ascore, aid, adate, asrc, aoff, alen = group[0]
            text, reason = check_answer(cfg, "" if aoff < 0 else _read(spools, (asrc, aoff, alen)))
            if reason is not None:
                part.rejected[reason] += 1
                continue
            part.kept += 1
            item = (qscore, -qid, text, (qdate, (qsrc, qoff, qlen), (ascore, aid, adate, None)))
            if len(heap) < cfg.keep_per_site:
                heapq.heappush(heap, item)
            elif cfg.keep_per_site > 0:
                heapq.heappushpop(heap, item)
        while pending is not None:
            outcomes["question_not_found"] += len(pending[1])
            pending = next(answers, None)
    finally:
        answers.close()
        questions.close()
        for fh in spools.values():
            fh.close()
    return part


def finish_site(site: str, group: str, label: str, cfg: SelectionConfig, spans: list[SpanResult],
                parts: list[JoinPart]) -> SiteResult:
    """Add up the ranges' and the join parts' counts; the best ``keep_per_site`` pairs become examples."""
    result = SiteResult(site, group, label)
    for span in spans:
        for kind, n in span.rows_by_type.items():
            result.rows_by_type[kind] = result.rows_by_type.get(kind, 0) + n
        result.questions.update(span.questions)
        result.rejected.update(span.rejected)
        result.answers.update(span.answers)
    for part in parts:
        result.rejected.update(part.rejected)
        result.answers.update(part.answers)
        result.questions["kept"] += part.kept
    best = sorted((item for part in parts for item in part.heap), reverse=True)[: max(cfg.keep_per_site, 0)]
    spools: dict[int, IO[bytes]] = {}
    try:
        spools.update((span.index, open(span.spool, "rb")) for span in spans)
        for qscore, negid, text, (qdate, qref, answer) in best:
            title, tags, body = _read(spools, qref).split("\0", 2)
            pair = SelectedPair(site, group, -negid, qscore, title, body, qdate, answer, text, parse_tags(tags))
            result.candidates.append(build_example(pair, cfg))
    finally:
        for fh in spools.values():
            fh.close()
    return result


def _read(spools: dict[int, IO[bytes]], ref: tuple[int, int, int]) -> str:
    src, off, n = ref
    fh = spools[src]
    fh.seek(off)
    return fh.read(n).decode("utf-8", "surrogatepass")


def select_site(dump: DumpInput, group: str, cfg: SelectionConfig,
                progress: Callable[[int], None] | None = None) -> SiteResult:
    """Read one site's dump in this process and select its LIMA candidates (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="lima-se-") as workdir:
        spans = [scan_span(dump, cfg, workdir, 0, None, progress)]
        return finish_site(dump.site, group, dump_label(dump), cfg, spans, [join_part(cfg, spans)])
