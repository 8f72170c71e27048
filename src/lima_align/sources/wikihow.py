"""wikiHow articles -> LIMA examples: category first, then an article; the title as a question, the body as answer.

Readers (the dump formats people have):

- CSV with ``title``, ``headline``, ``text`` columns (the widely used ``wikihowAll.csv``; optional ``category``
  and ``url``): paragraphs of ``text`` are the steps, each prefixed by its ``headline`` line when the counts match;
- JSON / JSONL scrapes, one record per article or per article section: ``title`` (else derived from the URL
  slug), steps as ``steps`` / ``step_texts`` (strings or ``{"text"}``) or a ``text`` / ``body`` string (HTML is
  cleaned with :func:`lima_align.curate.html.html_to_text`), optional ``category`` and ``url``; records sharing
  a URL (``section_id`` 0, 1, ...) are the methods/parts of one article;
- an index CSV ``Category,Title,Link`` (titles and categories, no bodies) used as a category lookup (``--index``).

Response (documented heuristics): steps become a numbered list (one list per method/part, each headed
"Part k" when there are several); an opening "This article/This wikiHow ..." becomes "The following answer ...";
sections named Tips, Warnings, References, Sources and Citations, Things You'll Need, Related wikiHows, Video,
Q&A are dropped; links keep their text, bare URLs, images, citation marks ``[1]`` and boilerplate lines
("Advertisement", "X Research source", "Thanks! ...", "Co-authored by", "Last Updated") are removed;
fairseq-style tokenized text ("do n't", "it ’ s") is detokenized.

Sampling (the paper): a category is drawn uniformly among the top-level categories that have articles left, then
an article within it (seeded). Fine categories map to the 19 top-level ones through the shipped table
``lima_align/data/wikihow_categories.csv``; an article with no category at all competes in one extra
"Uncategorized" bucket (or is rejected with ``--no-uncategorized``). Licence: CC BY-NC-SA 3.0.
"""

from __future__ import annotations

import csv
import io
import random
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from lima_align.conversation import Example, ReadReport, provenance
from lima_align.curate.html import html_to_text
from lima_align.curate.site_sampling import temperature_sample
from lima_align.curate.text import csv_rows, detokenize
from lima_align.errors import DataError
from lima_align.fileio import iter_json_records, read_text
from lima_align.sources.base import Curated, Progress, audit, settings

SOURCE = "wikihow"
LICENSE = "CC BY-NC-SA 3.0"
UNCATEGORIZED = "Uncategorized"
DEFAULT_N = 200
DEFAULT_MIN_CHARS = 1000

REASONS = {
    "no_title": "no title and no URL to derive one from",
    "no_steps": "no article body (steps or text)",
    "too_short": "response shorter than --min-chars after pruning",
    "duplicate_title": "an article with the same title was already read",
    "category_not_mapped": "category not in the category table (and not a top-level category)",
    "uncategorized": "no category, and --no-uncategorized",
    "not_sampled": "eligible article not drawn by the category-first sampling",
}
_DROP_SECTIONS = re.compile(r"^(tips|warnings?|references|sources( and citations)?|things you['’]ll need|"
                            r"related wikihows|videos?|(community |expert )?q ?& ?a|reader success stories)\b",
                            re.IGNORECASE)
_BOILERPLATE = re.compile(
    r"^\s*(advertisement|thanks!.*|did this (article|summary) help you\??.*|last updated:.*|co-authored by.*|"
    r"this article has been viewed.*|\d+ (research|expert) sources?|image:.*|.*\bis a [“\"]wiki,?[”\"].*)\s*$",
    re.IGNORECASE)
_INLINE_JUNK = re.compile(r"\s*\[\d+\]|\s*\bX (Research|Expert|Trustworthy) source\b|"
                          r"\s*(?:https?|ftp)://\S+|\s*www\.\S+")
_MD_LINK = re.compile(r"!\[[^\]]*\]\([^)]*\)|\[([^\]]+)\]\([^)]*\)")
_OPENING = re.compile(r"^(this|the following) (wikihow( article)?|article|guide)\b", re.IGNORECASE)
_MARKER = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+")
_HTML = re.compile(r"<(p|div|a|img|ul|ol|li|br|b|i|span|h\d)\b", re.IGNORECASE)


@dataclass
class Article:
    """One article as read: title, sections of steps, optional intro, category and URL."""

    title: str
    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    intro: str = ""
    category: str = ""
    url: str = ""
    origin: str = ""
    line: int = 0


def normalize(name: str) -> str:
    """Category/title key: lower case, '&' as 'and', punctuation and hyphens as single spaces."""
    return " ".join(re.sub(r"[^a-z0-9']+", " ", name.lower().replace("&", " and ")).split())


def load_category_table(override: str | Path | None = None) -> dict[str, str]:
    """Fine category (normalized) -> top-level category: the shipped table, updated by a user CSV."""
    text = resources.files("lima_align").joinpath("data/wikihow_categories.csv").read_text("utf-8")
    table = _parse_category_table(text, "wikihow_categories.csv")
    if override is not None:
        table.update(_parse_category_table(read_text(override), str(override)))
    return table


def _parse_category_table(text: str, origin: str) -> dict[str, str]:
    table = {}
    for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        if not row.get("category") or not row.get("top_level"):
            raise DataError("expected columns category,top_level", origin, line)
        table[normalize(row["category"])] = row["top_level"].strip()
    return table


def load_index(path: str | Path) -> dict[str, str]:
    """Category lookup from an index CSV (``Category,Title,Link``): keys are normalized links and titles."""
    lookup: dict[str, str] = {}
    for line, row in csv_rows(path):
        category = (row.get("category") or "").strip()
        for key in (row.get("link"), row.get("title")):
            if key and category:
                lookup.setdefault(_key(key), category)
    return lookup


def _key(link_or_title: str) -> str:
    slug = link_or_title.rstrip("/").rsplit("/", 1)[-1] if "/" in link_or_title else link_or_title
    return normalize(slug.replace("-", " "))


def read_csv(path: str | Path) -> Iterator[Article]:
    """Articles of a ``title,headline,text`` CSV (see the module docstring)."""
    for line, row in csv_rows(path):
        if "title" not in row or "text" not in row:
            raise DataError("a wikiHow CSV needs 'title' and 'text' columns", path, 1)
        paragraphs = [p.strip(" ,;\t") for p in (row.get("text") or "").split("\n")]
        paragraphs = [p for p in paragraphs if p]
        heads = [h.strip(" ,;\t") for h in (row.get("headline") or "").split("\n") if h.strip(" ,;\t")]
        if len(heads) == len(paragraphs):
            paragraphs = [f"{h} {p}" for h, p in zip(heads, paragraphs)]
        yield Article(title=_clean_title(row.get("title") or ""), sections=[("", paragraphs)] if paragraphs else [],
                      category=(row.get("category") or "").strip(), url=(row.get("url") or "").strip(),
                      origin=Path(path).name, line=line)


def read_json(path: str | Path, report: ReadReport) -> Iterator[Article]:
    """Articles of a JSON array or JSONL scrape; records sharing a URL (or title) are sections of one article."""
    articles: dict[str, Article] = {}
    sections: dict[str, list[tuple[float, int, tuple[str, list[str]]]]] = {}
    for line, rec in iter_json_records(path, on_error=report.skip_bad):
        if not isinstance(rec, dict):
            report.skip_bad(DataError("expected an object", path, line))
            continue
        url = str(rec.get("url") or rec.get("link") or "")
        title = _clean_title(str(rec.get("title") or "")) or _title_from_url(url)
        key = url or title or f"line {line}"
        if key not in articles:
            articles[key] = Article(title=title, url=url, origin=Path(path).name, line=line,
                                    category=_category_of(rec), intro=str(rec.get("intro") or ""))
        part = (str(rec.get("section") or rec.get("method") or ""), _steps_of(rec))
        sections.setdefault(key, []).append((_number(rec.get("section_id")), line, part))
    for key, art in articles.items():  # sections in section_id order when the scrape numbers them
        art.sections = [part for _, _, part in sorted(sections[key], key=lambda t: t[:2])]
        yield art


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0


def _category_of(rec: dict[str, Any]) -> str:
    cat = rec.get("category") or rec.get("Category") or rec.get("categories") or ""
    return str(cat[0] if isinstance(cat, list) and cat else cat).strip()


def _steps_of(rec: dict[str, Any]) -> list[str]:
    steps = rec.get("steps") or rec.get("step_texts")
    if isinstance(steps, list):
        texts = [s.get("text", "") if isinstance(s, dict) else str(s) for s in steps]
        return [t.strip() for t in texts if isinstance(t, str) and t.strip()]
    body = rec.get("text") or rec.get("body") or rec.get("article") or ""
    if not isinstance(body, str):
        return []
    if _HTML.search(body):
        body = html_to_text(body)
    return [p.strip() for p in re.split(r"\n\s*\n|\n(?=\d+\.\s)", body) if p.strip()]


def _clean_title(title: str) -> str:
    """Title without the "How to" prefix and the trailing index digits some CSV dumps carry ("...Omelette1")."""
    title = re.sub(r"(?<=[A-Za-z)])\d+$", "", title.strip())
    return re.sub(r"^how to\s+", "", title, flags=re.IGNORECASE).strip()


def _title_from_url(url: str) -> str:
    slug = url.rstrip("/").rsplit("/", 1)[-1] if url else ""
    return slug.replace("-", " ").strip()


def as_question(title: str) -> str:
    """The paper's prompt: "How to cook an omelette?" from "Cook an Omelette" (wikiHow's capitalisation kept)."""
    return f"How to {title.rstrip(' ?.')}?"


def clean_step(text: str) -> str:
    """One step without links, images, citation marks, URLs and boilerplate; detokenized."""
    text = _MD_LINK.sub(lambda m: m.group(1) or "", _MARKER.sub("", detokenize(text)))
    text = _INLINE_JUNK.sub("", text)
    lines = [ln for ln in text.split("\n") if ln.strip() and not _BOILERPLATE.match(ln)]
    return " ".join(" ".join(lines).split())


def render_response(article: Article) -> str:
    """The article body as the answer: intro (opening rewritten), then numbered steps per kept section."""
    kept = [(head, [s for s in map(clean_step, steps) if s]) for head, steps in article.sections
            if not _DROP_SECTIONS.match(head.strip())]
    kept = [(head, steps) for head, steps in kept if steps]
    blocks = []
    intro = clean_step(article.intro)
    if intro:
        blocks.append(intro)
    for k, (head, steps) in enumerate(kept, start=1):
        numbered = "\n".join(f"{i}. {s}" for i, s in enumerate(steps, start=1))
        if len(kept) > 1:
            numbered = (f"Part {k}: {clean_step(head)}" if head.strip() else f"Part {k}") + "\n" + numbered
        blocks.append(numbered)
    return _OPENING.sub("The following answer", "\n\n".join(blocks), count=1)


@dataclass
class WikiHowConfig:
    """The options of ``curate wikihow`` (field = option name); defaults are the paper's (200, category first)."""

    n: int = DEFAULT_N  # articles to sample
    seed: int = 0
    min_chars: int = DEFAULT_MIN_CHARS  # minimum response length after pruning
    uncategorized: bool = True  # sample articles with no category as one extra category (--no-uncategorized)
    index: str | None = None  # CSV Category,Title,Link used to find each article's category
    category_table: str | None = None  # CSV category,top_level replacing rows of the shipped table
    strict: bool = False  # accepted like every source's; unreadable JSONL lines are always counted skips here


def read_articles(paths: Iterable[str | Path], report: ReadReport) -> Iterator[Article]:
    """Articles from CSV / JSON / JSONL files, by extension."""
    for path in paths:
        if Path(path).suffix.lower() in (".csv", ".tsv"):
            yield from read_csv(path)
        else:
            yield from read_json(path, report)


def top_category(article: Article, table: dict[str, str], index: dict[str, str]) -> str | None:
    """The article's top-level category ("Uncategorized" when it has none), or None when unmapped.

    A category found in the index is stored on the article (as its fine category).
    """
    if not article.category:
        article.category = index.get(_key(article.url)) or index.get(_key(article.title)) or ""
    if not article.category:
        return UNCATEGORIZED
    return table.get(normalize(article.category))


def curate(paths: Iterable[str | Path], cfg: WikiHowConfig, table: dict[str, str],
           index: dict[str, str] | None = None) -> tuple[list[Example], ReadReport]:
    """Read, prune, filter and sample articles category-first; every article read is kept or counted."""
    report = ReadReport()
    pools: dict[str, list[Example]] = {}
    seen: set[str] = set()
    for art in read_articles(paths, report):
        category = top_category(art, table, index or {})
        response = render_response(art)
        reason = _reason(art, category, response, cfg, seen)
        if reason:
            report.drop(reason)
            continue
        seen.add(normalize(art.title))
        pools.setdefault(category, []).append(_example(art, category, response, cfg.seed))  # type: ignore[arg-type]
    rng = random.Random(cfg.seed)
    for category in sorted(pools):  # article order within a category is random, category draws are uniform
        rng.shuffle(pools[category])
    drawn = temperature_sample(pools, {c: 1 for c in pools}, cfg.n, tau=1.0, seed=cfg.seed)
    report.kept = len(drawn)
    report.dropped["not_sampled"] += sum(map(len, pools.values())) - len(drawn)
    return [ex for _, ex in drawn], report


def _reason(art: Article, category: str | None, response: str, cfg: WikiHowConfig, seen: set[str]) -> str | None:
    if not art.title:
        return "no_title"
    if not any(steps for _, steps in art.sections) and not art.intro:
        return "no_steps"
    if normalize(art.title) in seen:
        return "duplicate_title"
    if category is None:
        return "category_not_mapped"
    if category == UNCATEGORIZED and not cfg.uncategorized:
        return "uncategorized"
    if len(response) < cfg.min_chars:
        return "too_short"
    return None


def _example(art: Article, category: str, response: str, seed: int) -> Example:
    meta = provenance(art.origin, LICENSE, url=art.url or None, source_id=art.url or f"{art.origin}:{art.line}",
                      category=category, fine_category=art.category or None, sections=len(art.sections),
                      seed=seed)
    slug = _key(art.url or art.title).replace(" ", "-")
    return Example(id=f"wikihow-{slug}", conversations=[as_question(art.title), response], source=SOURCE,
                   meta=meta)


class WikiHowSource:
    """``curate wikihow``: the :class:`~lima_align.sources.base.Source` of wikiHow articles."""

    name = "wikihow"
    config_type = WikiHowConfig
    negated = {"no_uncategorized": "uncategorized"}

    def curate(self, paths: Sequence[str | Path], config: WikiHowConfig,
               progress: Progress | None = None) -> Curated:
        index = load_index(config.index) if config.index else None
        examples, read = curate(paths, config, load_category_table(config.category_table), index)
        by_category: dict[str, int] = {}
        for ex in examples:
            by_category[ex.meta["curation"]["category"]] = by_category.get(ex.meta["curation"]["category"], 0) + 1
        extra = {"unit": "article", "kept_by_category": by_category, "reasons": REASONS}
        return Curated(examples, audit(self.name, read, settings(paths, config), extra))
