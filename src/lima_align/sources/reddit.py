"""Reddit via Pushshift dumps -> r/WritingPrompts training candidates and r/AskReddit test prompts.

Input: Pushshift monthly dumps, ``RS_*.zst`` (submissions) and ``RC_*.zst`` (comments): zstandard-compressed
NDJSON written with a long window (up to 2 GiB), decompressed here as a stream; plain NDJSON works too. Files are
told apart by name (``RS_``/``RC_``) or, failing that, by their first record (``title`` vs ``body``). Submissions
are read first and the few that pass the prompt rules are kept in memory; comments are then streamed and joined by
``link_id`` (``t3_<submission id>``); a top-level comment has ``parent_id == link_id``. Also read: the fairseq-style
WritingPrompts CSV (``prompt``, ``story``), detokenized.

r/WritingPrompts rules (training candidates, ``--subreddit writingprompts``): the prompt is not deleted or
removed, not a moderator/stickied/AutoModerator post, carries a story tag ([WP], [SP], [EU], [CW], [TT], [RF];
[META], [OT], [MOD] posts are meta, [IP]/[MP]/[PI]/[PM] are not text premises), and scores at least
``--min-prompt-score``; its best top-level reply that is a story (not deleted/removed, not a bot or moderator,
score >= ``--min-story-score``, ``--min-words``..``--max-words`` words) is the response. The tag is stripped.

r/AskReddit rules (test prompts, no response, ``--subreddit askreddit``): title-only (empty self text), not NSFW,
a question (ends with "?"), not referring to Reddit, OP, the sub or edits, scoring at least ``--min-prompt-score``.

The paper picked these by hand: the output is a candidate list, most upvoted first (``--max-candidates``), for
``lima-align review``. Licence: Reddit user content, no open licence (Reddit User Agreement); recorded per row.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from lima_align.conversation import Example, ReadReport, provenance
from lima_align.curate.text import csv_rows, detokenize
from lima_align.errors import DataError
from lima_align.sources.base import Curated, Progress, audit, settings

WRITINGPROMPTS, ASKREDDIT = "writingprompts", "askreddit"
LICENSE = "Reddit user content (Reddit User Agreement; no open licence)"
CHUNK = 1 << 20
MAX_WINDOW = 1 << 31  # Pushshift dumps are compressed with --long=31

REASONS = {
    "other_subreddit": "submission from another subreddit",
    "deleted_or_removed": "deleted or removed by its author or the moderators",
    "moderator_post": "moderator, stickied or AutoModerator post",
    "meta_post": "no story tag, or a [META]/[OT]/[MOD] post",
    "not_story_prompt": "image/media/prompt-inspired/prompt-me post ([IP], [MP], [PI], [PM]), not a text premise",
    "below_min_score": "score below --min-prompt-score",
    "nsfw": "marked over 18",
    "has_body": "has self text (not a title-only prompt)",
    "not_a_question": "title does not end with a question mark",
    "refers_to_reddit": "title refers to Reddit, OP, the sub or an edit (not self-contained)",
    "no_story_reply": "no top-level reply passes the story rules",
    "not_in_top": "eligible but beyond --max-candidates (lower score)",
}
STORY_TAGS = frozenset({"WP", "SP", "EU", "CW", "TT", "RF"})
META_TAGS = frozenset({"META", "OT", "MOD"})
_TAG = re.compile(r"^\s*[\[(]\s*([A-Za-z]{2,4})\s*[\])]\s*")
_REDDIT_REFS = re.compile(r"\b(reddit|redditors?|r/\w+|this sub(reddit)?|op|mods?|edit|upvotes?|karma)\b",
                          re.IGNORECASE)
_ASK_TAGS = re.compile(r"\[(serious|nsfw)\]\s*", re.IGNORECASE)
_GONE = frozenset({"[deleted]", "[removed]"})
_BOTS = frozenset({"automoderator", "writingpromptsrobot"})
_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_URL = re.compile(r"\s*https?://\S+")


def _zstd():
    try:
        import zstandard
    except ImportError:
        raise DataError("reading .zst Pushshift dumps needs the zstandard package: pip install zstandard") from None
    return zstandard


def _zst_chunks(fh: Any, path: Path) -> Iterator[bytes]:
    """Decompressed bytes of every frame; a corrupt or truncated frame raises (the library alone would not)."""
    zstandard = _zstd()
    dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
    obj, fed = dctx.decompressobj(), False
    try:
        while chunk := fh.read(CHUNK):
            while chunk:
                out, fed = obj.decompress(chunk), True
                if out:
                    yield out
                if not obj.eof:
                    break
                chunk, obj, fed = obj.unused_data, dctx.decompressobj(), False
    except zstandard.ZstdError as exc:
        raise DataError(f"corrupt zstd data: {exc}", path) from None
    if fed and not obj.eof:
        raise DataError("truncated zstd file (the last frame is incomplete)", path)


def _raw_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        if path.suffix.lower() == ".zst":
            yield from _zst_chunks(fh, path)
        else:
            while chunk := fh.read(CHUNK):
                yield chunk


def iter_ndjson(path: str | Path, report: ReadReport, strict: bool = False) -> Iterator[dict[str, Any]]:
    """Objects of a (zstd-compressed) NDJSON file, streaming; bad lines are counted skips (or raise if strict)."""
    p = Path(path)
    if not p.is_file():
        raise DataError("no such file", p)
    line_no, rest = 0, b""
    try:
        for chunk in _raw_chunks(p):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for raw in lines:
                line_no += 1
                obj = _parse_line(raw, p, line_no, report, strict)
                if obj is not None:
                    yield obj
    except DataError as exc:
        if exc.line is None:  # a decompression error: name the last line read
            raise DataError(f"{exc.problem} after line {line_no}", p, line_no + 1) from None
        raise
    if rest.strip():
        obj = _parse_line(rest, p, line_no + 1, report, strict)
        if obj is not None:
            yield obj


def _parse_line(raw: bytes, path: Path, line: int, report: ReadReport, strict: bool) -> dict[str, Any] | None:
    if not raw.strip():
        return None
    try:
        obj = json.loads(raw)
        if not isinstance(obj, dict):
            raise ValueError("expected a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        error = DataError(f"malformed NDJSON line: {str(exc)[:80]}", path, line)
        if strict:
            raise error from None
        report.skip_bad(error)
        return None
    return obj


def file_kind(path: str | Path) -> str:
    """'submissions', 'comments' or 'csv': by name (RS_/RC_, .csv), else by the first record's fields."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        return "csv"
    if p.name.upper().startswith("RS_"):
        return "submissions"
    if p.name.upper().startswith("RC_"):
        return "comments"
    first = next(iter_ndjson(p, ReadReport()), None)
    if first is None:
        raise DataError("empty dump: cannot tell submissions from comments", p)
    return "submissions" if "title" in first else "comments"


# 3x the paper's 150 stories and 70 test prompts, for hand selection
DEFAULT_CANDIDATES = {WRITINGPROMPTS: 450, ASKREDDIT: 210}


@dataclass
class RedditConfig:
    """The options of ``curate reddit`` (field = option name); defaults aim at the paper's "most upvoted" posts
    (150 WritingPrompts stories, 70 AskReddit prompts, picked by hand from these candidates)."""

    subreddit: str = WRITINGPROMPTS
    min_prompt_score: int = 100
    min_story_score: int = 10
    min_words: int = 100  # story length bounds (words)
    max_words: int = 1000
    max_candidates: int | None = None  # most upvoted first; None (or 0): DEFAULT_CANDIDATES[subreddit]
    strict: bool = False  # a bad NDJSON line raises instead of being a counted skip
    seed: int = 0  # accepted like every source's; the ranking draws nothing at random

    def __post_init__(self) -> None:
        if self.subreddit not in DEFAULT_CANDIDATES:
            raise ValueError(f"subreddit must be one of {', '.join(DEFAULT_CANDIDATES)}, got {self.subreddit!r}")

    @property
    def limit(self) -> int:
        """How many candidates are kept."""
        return self.max_candidates or DEFAULT_CANDIDATES[self.subreddit]


def _gone(*texts: Any) -> bool:
    return any(isinstance(t, str) and t.strip().lower() in _GONE for t in texts)


def _is_mod(post: dict[str, Any]) -> bool:
    return (post.get("distinguished") in ("moderator", "admin") or bool(post.get("stickied"))
            or str(post.get("author", "")).lower() in _BOTS)


def split_tag(title: str) -> tuple[str | None, str]:
    """``("WP", "premise")`` from ``"[WP] premise"``; ``(None, title)`` when untagged."""
    m = _TAG.match(title)
    return (m.group(1).upper(), title[m.end():].strip()) if m else (None, title.strip())


def submission_reason(post: dict[str, Any], cfg: RedditConfig) -> str | None:
    """Why a submission is not a candidate prompt for ``cfg.subreddit``, or None."""
    if str(post.get("subreddit", "")).lower() != cfg.subreddit:
        return "other_subreddit"
    title = str(post.get("title") or "")
    if not title.strip() or _gone(post.get("author"), post.get("selftext")) or post.get("removed_by_category"):
        return "deleted_or_removed"
    if _is_mod(post):
        return "moderator_post"
    reason = _wp_reason(title) if cfg.subreddit == WRITINGPROMPTS else _ask_reason(post, title)
    if reason is None and _score(post) < cfg.min_prompt_score:
        reason = "below_min_score"
    return reason


def _wp_reason(title: str) -> str | None:
    tag, _ = split_tag(title)
    if tag is None or tag in META_TAGS:
        return "meta_post"
    return None if tag in STORY_TAGS else "not_story_prompt"


def _ask_reason(post: dict[str, Any], title: str) -> str | None:
    if post.get("over_18"):
        return "nsfw"
    if str(post.get("selftext") or "").strip():
        return "has_body"
    if not title.rstrip().endswith("?"):
        return "not_a_question"
    if _REDDIT_REFS.search(_ASK_TAGS.sub("", title)):
        return "refers_to_reddit"
    return None


def _score(post: dict[str, Any]) -> int:
    try:
        return int(post.get("score") or 0)
    except (TypeError, ValueError):
        return 0


def clean_story(body: str) -> str:
    """A story reply without markdown links' URLs and bare URLs; paragraphs kept."""
    text = _URL.sub("", _MD_LINK.sub(r"\1", body.replace("\r\n", "\n")))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def story_reason(comment: dict[str, Any], cfg: RedditConfig) -> str | None:
    """Why a comment is not a usable story reply, or None (the comment must be top-level: checked by the join)."""
    body = comment.get("body")
    if not isinstance(body, str) or _gone(body, comment.get("author")):
        return "deleted_or_removed"
    if _is_mod(comment):
        return "moderator_post"
    if _score(comment) < cfg.min_story_score:
        return "below_min_score"
    words = len(clean_story(body).split())
    if words < cfg.min_words:
        return "too_short"
    return "too_long" if words > cfg.max_words else None


@dataclass
class Candidate:
    """A prompt that passed the submission rules, with its best story reply so far (WritingPrompts)."""

    id: str
    title: str
    score: int | None
    origin: str
    url: str | None = None
    story: str | None = None
    story_id: str | None = None
    story_score: int | None = None


def curate(paths: Iterable[str | Path], cfg: RedditConfig) -> tuple[list[Example], ReadReport, dict[str, Any]]:
    """Candidates from dumps and CSVs: submissions first, then comments joined to them; audit of every post."""
    kinds = {Path(p): file_kind(p) for p in paths}
    report, bad_comments, outcomes = ReadReport(), ReadReport(), Counter()
    found: dict[str, Candidate] = {}
    for path, kind in kinds.items():
        if kind == "submissions":
            _read_submissions(path, cfg, report, found)
        elif kind == "csv":
            _read_wp_csv(path, cfg, report, found)
    for path, kind in kinds.items():
        if kind == "comments":
            _join_comments(path, cfg, bad_comments, outcomes, found)
    eligible = [c for c in found.values() if cfg.subreddit == ASKREDDIT or c.story is not None]
    report.dropped["no_story_reply"] += len(found) - len(eligible)
    eligible.sort(key=lambda c: (-(c.score if c.score is not None else -1), c.id))
    report.dropped["not_in_top"] += max(0, len(eligible) - cfg.limit)
    chosen = eligible[:cfg.limit]
    report.kept = len(chosen)
    extra = {"comments": {"considered": sum(outcomes.values()) + sum(bad_comments.skipped_bad.values()),
                          "outcomes": dict(outcomes.most_common()), "stories_used": len(eligible) if
                          cfg.subreddit == WRITINGPROMPTS else 0,
                          "skipped_bad": dict(bad_comments.skipped_bad), "first_bad": bad_comments.first_bad}}
    return [_example(c, cfg) for c in chosen], report, extra


def _read_submissions(path: Path, cfg: RedditConfig, report: ReadReport, found: dict[str, Candidate]) -> None:
    for post in iter_ndjson(path, report, cfg.strict):
        reason = submission_reason(post, cfg)
        if reason is None and not post.get("id"):
            reason = "deleted_or_removed"
        if reason:
            report.drop(reason)
            continue
        sid = str(post["id"])
        title = split_tag(post["title"])[1] if cfg.subreddit == WRITINGPROMPTS else _ASK_TAGS.sub("", post["title"])
        permalink = post.get("permalink")
        found[sid] = Candidate(sid, " ".join(title.split()), _score(post), path.name,
                               f"https://www.reddit.com{permalink}" if permalink else None)


def _join_comments(path: Path, cfg: RedditConfig, bad: ReadReport, outcomes: Counter,
                   found: dict[str, Candidate]) -> None:
    """Stream comments; each gets one outcome; a candidate keeps its highest-scoring story reply."""
    for c in iter_ndjson(path, bad, cfg.strict):
        link = str(c.get("link_id") or "")
        cand = found.get(link[3:]) if link.startswith("t3_") else None
        if cand is None:
            reason: str | None = "not_a_candidate_post"
        elif c.get("parent_id") != link:
            reason = "not_top_level"
        else:
            reason = story_reason(c, cfg)
        outcomes[reason or "story"] += 1
        if cand is not None and reason is None and (cand.story_score is None or _score(c) > cand.story_score):
            cand.story, cand.story_id, cand.story_score = clean_story(c["body"]), str(c.get("id")), _score(c)


def _read_wp_csv(path: Path, cfg: RedditConfig, report: ReadReport, found: dict[str, Candidate]) -> None:
    """The fairseq WritingPrompts CSV (``prompt``, ``story``; no scores): the prompt and story rules that apply."""

    for line, row in csv_rows(path):
        if "prompt" not in row or "story" not in row:
            raise DataError("a WritingPrompts CSV needs 'prompt' and 'story' columns", path, 1)
        title, story = detokenize(row["prompt"] or ""), detokenize(row["story"] or "")
        fake = {"body": story, "score": cfg.min_story_score}  # no score in this format: only length rules
        reason = _wp_reason(title) or story_reason(fake, cfg)
        if reason:
            report.drop(reason)
            continue
        rid = f"{path.stem}-{row.get('row_id') or line}"
        found[rid] = Candidate(rid, split_tag(title)[1], None, path.name, None, clean_story(story), None, None)


def _example(c: Candidate, cfg: RedditConfig) -> Example:
    sub = "r/WritingPrompts" if cfg.subreddit == WRITINGPROMPTS else "r/AskReddit"
    url = c.url or (f"https://www.reddit.com/comments/{c.id}" if c.score is not None else None)
    curation: dict[str, Any] = {"file": c.origin, "prompt_score": c.score, "needs_review": True}
    if cfg.subreddit == WRITINGPROMPTS:
        curation.update(story_id=c.story_id, story_score=c.story_score, split="train")
        turns = [c.title, c.story]
    else:
        curation.update(split="test")
        turns = [c.title]
    return Example(id=f"reddit-{cfg.subreddit}-{c.id}", conversations=turns, source=f"reddit_{cfg.subreddit}",
                   meta=provenance(sub, LICENSE, url=url, source_id=c.id, **curation))


class RedditSource:
    """``curate reddit``: the :class:`~lima_align.sources.base.Source` of Pushshift dumps and WritingPrompts CSVs."""

    name = "reddit"
    config_type = RedditConfig
    negated: dict[str, str] = {}

    def curate(self, paths: Sequence[str | Path], config: RedditConfig,
               progress: Progress | None = None) -> Curated:
        examples, read, extra = curate(paths, config)
        report = audit(self.name, read, settings(paths, config), {"unit": "submission", **extra, "reasons": REASONS})
        return Curated(examples, report)
