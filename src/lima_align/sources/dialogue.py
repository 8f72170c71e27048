"""Multi-turn candidates from Stack Exchange comment threads: question -> answer -> follow-up -> reply ...

Input: a site's dump folder holding ``Posts.xml`` and ``Comments.xml`` (rows ``Id, PostId, Score, Text,
CreationDate, UserId, UserDisplayName, ContentLicense``). For each question, its top-scoring answer (by someone
other than the asker) opens the chain; the comments on that answer, in time order, continue it while they
alternate between the asker (user turns) and the answerer (assistant turns). Comments by other people are left
out; the chain stops at the first comment that breaks the alternation, and a trailing user turn is dropped so that
the chain ends on an answer. Chains with at least ``min_turns`` turns are candidates to edit into the assistant
style (the paper edited 20 of them): ``lima-align review`` is the next step.

Texts: the question is its title and body, posts are cleaned with :func:`lima_align.curate.html.html_to_text`,
comments lose a leading ``@name``. Licence: the Stack Exchange CC BY-SA version of the latest turn's date.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from lxml import etree

from lima_align.conversation import Example, ReadReport, provenance
from lima_align.curate.html import html_to_text
from lima_align.errors import DataError
from lima_align.sources.base import Curated, Progress, audit, settings
from lima_align.sources.se_dump import QUESTION, Post, iter_rows, read_answer, read_question, resolve_input
from lima_align.sources.se_pairs import license_for

SOURCE = "dialogue_stackexchange"
MIN_TURNS = 4
REASONS = {
    "no_answer": "no answer by someone other than the asker",
    "asker_unknown": "the question's owner is unknown (deleted account)",
    "no_follow_up": "fewer than --min-turns alternating turns (question, answer, follow-up, reply)",
}
_MENTION = re.compile(r"^\s*@[\w.\-]+[,:]?\s*")


@dataclass
class DialogueConfig:
    """The options of ``curate dialogue`` (field = option name)."""

    min_turns: int = MIN_TURNS  # shortest chain kept (turns)
    seed: int = 0  # accepted like every source's; nothing is drawn at random
    strict: bool = False  # accepted like every source's; unreadable rows are always counted skips here


@dataclass
class Comment:
    """The fields of a ``Comments.xml`` row used to build chains."""

    post: int
    user: int
    created: str
    text: str


def iter_comments(path: Path, report: ReadReport) -> list[Comment]:
    """All comments of a ``Comments.xml`` (rows without PostId/Text/UserId are counted skips)."""
    if not path.is_file():
        raise DataError("no Comments.xml beside Posts.xml", path)
    out: list[Comment] = []
    try:
        for _, row in etree.iterparse(str(path), tag="row", resolve_entities=False, no_network=True,
                                      load_dtd=False):
            try:
                out.append(Comment(int(row.get("PostId")), int(row.get("UserId") or 0),
                                   row.get("CreationDate") or "", row.get("Text") or ""))
            except (TypeError, ValueError):
                report.skip_bad(DataError("comment row without a numeric PostId", path, row.sourceline))
            row.clear()
    except etree.XMLSyntaxError as exc:
        raise DataError(f"malformed XML: {exc.msg}", path, exc.lineno) from None
    return out


def build_chain(question: Post, answer: Post, comments: list[Comment]) -> list[tuple[str, str]]:
    """``(text, date)`` turns: question, answer, then alternating asker/answerer comments; ends on the answerer."""
    turns = [(f"{question.title.strip()}\n\n{html_to_text(question.body)}".strip(), question.created),
             (html_to_text(answer.body), answer.created)]
    speakers = (question.owner, answer.owner)
    for c in sorted(comments, key=lambda c: c.created):
        if c.user not in speakers:
            continue  # other people's remarks are not part of the two-person dialogue
        if c.user != speakers[len(turns) % 2]:
            break
        turns.append((_MENTION.sub("", c.text).strip(), c.created))
    return turns if len(turns) % 2 == 0 else turns[:-1]


def curate(dump_dir: str | Path, *, min_turns: int = MIN_TURNS) -> tuple[list[Example], ReadReport]:
    """Chain candidates of one site dump; every question is kept or counted with a reason."""
    report = ReadReport()
    dump = resolve_input(dump_dir)
    if dump.member is not None:  # Comments.xml is read from the folder of Posts.xml, which an archive lacks
        raise DataError("dialogue reads a dump folder (Posts.xml and Comments.xml); extract the archive", dump_dir)
    questions: dict[int, Post] = {}
    answers: dict[int, list[Post]] = defaultdict(list)
    for kind, elem in iter_rows(dump, {}):
        post = read_question(elem) if kind == QUESTION else read_answer(elem, min_score=-(1 << 62))
        if isinstance(post, str):
            report.skip_bad(DataError(f"unusable post row ({post})", dump.path, elem.sourceline))
        elif kind == QUESTION:
            questions[post.id] = post
        else:
            answers[post.parent].append(post)
    by_post: dict[int, list[Comment]] = defaultdict(list)
    for c in iter_comments(dump.path.parent / "Comments.xml", report):
        by_post[c.post].append(c)
    examples = []
    for qid in sorted(questions):
        q = questions[qid]
        others = [a for a in answers.get(qid, []) if a.owner != q.owner or not q.owner]
        if not q.owner:
            report.drop("asker_unknown")
        elif not others:
            report.drop("no_answer")
        else:
            answer = max(others, key=lambda a: (a.score, -a.id))
            turns = build_chain(q, answer, by_post.get(answer.id, []))
            if len(turns) < min_turns or not all(t for t, _ in turns):
                report.drop("no_follow_up")
            else:
                examples.append(_example(dump.site, q, answer, turns))
    report.kept = len(examples)
    return examples, report


def _example(site: str, q: Post, a: Post, turns: list[tuple[str, str]]) -> Example:
    latest = max(date for _, date in turns)
    meta = provenance(site, license_for(latest), url=f"https://{site}/q/{q.id}", source_id=str(q.id),
                      answer_id=a.id, turns=len(turns), needs_edit=True)
    return Example(id=f"dialogue-{site}-{q.id}", conversations=[t for t, _ in turns], source=SOURCE, meta=meta)


class DialogueSource:
    """``curate dialogue``: the :class:`~lima_align.sources.base.Source` of comment-thread chains."""

    name = "dialogue"
    config_type = DialogueConfig
    negated: dict[str, str] = {}

    def curate(self, paths: Sequence[str | Path], config: DialogueConfig,
               progress: Progress | None = None) -> Curated:
        examples: list[Example] = []
        read = ReadReport()
        for dump in paths:
            found, part = curate(dump, min_turns=config.min_turns)
            examples += found
            read.kept += part.kept
            read.dropped.update(part.dropped)
            read.skipped_bad.update(part.skipped_bad)
            read.first_bad += part.first_bad[: 5 - len(read.first_bad)]
        report = audit(self.name, read, settings(paths, config), {"unit": "question", "reasons": REASONS})
        return Curated(examples, report)
