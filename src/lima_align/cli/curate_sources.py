"""``lima-align curate {wikihow,reddit,natural-instructions,authored,dialogue}``: argument parsing only.

Every subcommand takes ``--out FILE.jsonl --report REPORT.json --seed N`` plus its source's options (defaults
are the paper's), calls the source module, writes the conversation JSONL and an audit report whose counts satisfy
``kept + rejected + skipped_bad = considered``. Empty output is an error (exit 2), never a silent success.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from lima_align.conversation import Example, ReadReport
from lima_align.errors import LimaError
from lima_align.fileio import write_json, write_jsonl

Handler = Callable[[argparse.Namespace], tuple[list[Example], ReadReport, dict[str, Any]]]


def _common(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument("--out", default=default_out, help="output conversation JSONL (default %(default)s)")
    parser.add_argument("--report", help="audit report JSON (default: OUT with .report.json)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first unreadable record or file instead of skipping and counting it")


def _add(sources: argparse._SubParsersAction, name: str, help_text: str, handler: Handler,
         default_out: str) -> argparse.ArgumentParser:
    parser = sources.add_parser(name, help=help_text, description=help_text,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _common(parser, default_out)
    parser.set_defaults(func=lambda args: _run(args, name, handler))
    return parser


def register_sources(sources: argparse._SubParsersAction) -> None:
    """Add the wikiHow, Reddit, Super-NaturalInstructions, authored and dialogue subcommands to ``curate``."""
    _register_natural_instructions(sources)
    _register_wikihow(sources)
    _register_reddit(sources)
    _register_authored(sources)
    _register_dialogue(sources)


def _register_natural_instructions(sources: argparse._SubParsersAction) -> None:
    from lima_align.sources import natural_instructions as sni

    p = _add(sources, "natural-instructions",
             "Super-NaturalInstructions: one random instance from each natural-language generation task",
             _natural_instructions, "natural_instructions.jsonl")
    p.add_argument("inputs", nargs="+", help="task .json files or directories of them (either schema)")
    p.add_argument("--tasks", type=int, default=sni.DEFAULT_TASKS, help="number of tasks (one example each)")
    p.add_argument("--categories", help="file of generation category names, one a line (default: the shipped "
                                        "sni_generation_categories.txt)")


def _natural_instructions(args: argparse.Namespace) -> tuple[list[Example], ReadReport, dict[str, Any]]:
    from lima_align.sources import natural_instructions as sni

    cats = sni.load_generation_categories(args.categories) if args.categories else None
    examples, report = sni.curate(args.inputs, n_tasks=args.tasks, seed=args.seed, categories=cats,
                                  skip_bad=not args.strict)
    return examples, report, {"unit": "task", "reasons": sni.REASONS}


def _register_wikihow(sources: argparse._SubParsersAction) -> None:
    from lima_align.sources import wikihow

    p = _add(sources, "wikihow", "wikiHow: category first, then an article; title as the question, pruned body "
                                 "with numbered steps as the answer", _wikihow, "wikihow.jsonl")
    p.add_argument("inputs", nargs="+", help="article files: CSV (title,headline,text), JSON or JSONL scrapes")
    p.add_argument("--index", help="CSV of Category,Title,Link used to find each article's category")
    p.add_argument("--category-table", help="CSV category,top_level replacing rows of the shipped table")
    p.add_argument("-n", "--n", type=int, default=wikihow.DEFAULT_N, help="articles to sample")
    p.add_argument("--min-chars", type=int, default=wikihow.DEFAULT_MIN_CHARS,
                   help="minimum response length in characters after pruning")
    p.add_argument("--no-uncategorized", action="store_true",
                   help="reject articles with no category instead of sampling them as one extra category")


def _wikihow(args: argparse.Namespace) -> tuple[list[Example], ReadReport, dict[str, Any]]:
    from lima_align.sources import wikihow

    cfg = wikihow.WikiHowConfig(n=args.n, seed=args.seed, min_chars=args.min_chars,
                                uncategorized=not args.no_uncategorized)
    index = wikihow.load_index(args.index) if args.index else None
    examples, report = wikihow.curate(args.inputs, cfg, wikihow.load_category_table(args.category_table), index)
    by_category: dict[str, int] = {}
    for ex in examples:
        by_category[ex.meta["curation"]["category"]] = by_category.get(ex.meta["curation"]["category"], 0) + 1
    return examples, report, {"unit": "article", "kept_by_category": by_category, "reasons": wikihow.REASONS}


def _register_reddit(sources: argparse._SubParsersAction) -> None:
    from lima_align.sources import reddit

    d = reddit.RedditConfig()
    p = _add(sources, "reddit", "Reddit (Pushshift dumps): r/WritingPrompts story candidates or r/AskReddit "
                                "title-only test prompts, most upvoted first, for hand review", _reddit,
             "reddit.jsonl")
    p.add_argument("inputs", nargs="+", help="RS_*/RC_* dumps (.zst or plain NDJSON) and/or a WritingPrompts CSV")
    p.add_argument("--subreddit", choices=[reddit.WRITINGPROMPTS, reddit.ASKREDDIT], default=d.subreddit)
    p.add_argument("--min-prompt-score", type=int, default=d.min_prompt_score)
    p.add_argument("--min-story-score", type=int, default=d.min_story_score)
    p.add_argument("--min-words", type=int, default=d.min_words, help="story length bounds (words)")
    p.add_argument("--max-words", type=int, default=d.max_words)
    p.add_argument("--max-candidates", type=int,
                   help="candidates kept, most upvoted first (default: 450 for writingprompts, 210 for askreddit: "
                        "3x the paper's 150 and 70, for hand selection)")


def _reddit(args: argparse.Namespace) -> tuple[list[Example], ReadReport, dict[str, Any]]:
    from lima_align.sources import reddit

    limit = args.max_candidates or (450 if args.subreddit == reddit.WRITINGPROMPTS else 210)
    cfg = reddit.RedditConfig(args.subreddit, args.min_prompt_score, args.min_story_score, args.min_words,
                              args.max_words, limit, args.strict)
    examples, report, extra = reddit.curate(args.inputs, cfg)
    return examples, report, {"unit": "submission", **extra, "reasons": reddit.REASONS}


def _register_authored(sources: argparse._SubParsersAction) -> None:
    from lima_align.sources import authored

    p = _add(sources, "authored", "hand-written examples (Markdown with front matter, or YAML) to conversation "
                                  "JSONL, with style warnings", _authored, "authored.jsonl")
    p.add_argument("inputs", nargs="+", help="example files (.md, .yaml) or directories of them")
    p.add_argument("--license", default=authored.DEFAULT_LICENSE, help="licence of the authored texts")
    p.add_argument("--min-words", type=int, default=authored.MIN_WORDS,
                   help="answers shorter than this get a too_short warning")


def _authored(args: argparse.Namespace) -> tuple[list[Example], ReadReport, dict[str, Any]]:
    from lima_align.sources import authored

    # Hand-written files are fixed by their author: an error stops unless told to skip (the opposite of dumps).
    examples, report, warnings = authored.curate(args.inputs, license=args.license, min_words=args.min_words,
                                                 skip_bad=False)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    counts: dict[str, int] = {}
    for w in warnings:
        counts[w.code] = counts.get(w.code, 0) + 1
    safety = sum(1 for ex in examples if ex.meta.get("safety"))
    return examples, report, {"unit": "example", "warnings": counts, "safety_tagged": safety,
                              "warning_lines": [str(w) for w in warnings[:200]]}


def _register_dialogue(sources: argparse._SubParsersAction) -> None:
    from lima_align.sources import dialogue

    p = _add(sources, "dialogue", "multi-turn candidates from Stack Exchange comment threads (asker and answerer "
                                  "alternating), to edit into the assistant style", _dialogue, "dialogue.jsonl")
    p.add_argument("dumps", nargs="+", help="site dump folders holding Posts.xml and Comments.xml")
    p.add_argument("--min-turns", type=int, default=dialogue.MIN_TURNS, help="shortest chain kept (turns)")


def _dialogue(args: argparse.Namespace) -> tuple[list[Example], ReadReport, dict[str, Any]]:
    from lima_align.sources import dialogue

    examples, report = [], ReadReport()
    for dump in args.dumps:
        found, part = dialogue.curate(dump, min_turns=args.min_turns)
        examples += found
        report.kept += part.kept
        report.dropped.update(part.dropped)
        report.skipped_bad.update(part.skipped_bad)
        report.first_bad += part.first_bad[: 5 - len(report.first_bad)]
    return examples, report, {"unit": "question", "reasons": dialogue.REASONS}


def audit(source: str, report: ReadReport, settings: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The report JSON: what was considered, kept, rejected by reason and skipped as unreadable."""
    rejected = {k: v for k, v in report.dropped.most_common() if v}
    skipped = {k: v for k, v in report.skipped_bad.most_common() if v}
    considered = report.kept + sum(rejected.values()) + sum(skipped.values())
    return {"source": source, "settings": settings, "considered": considered, "kept": report.kept,
            "rejected": rejected, "skipped_bad": skipped, "first_bad": list(report.first_bad), **extra}


def _run(args: argparse.Namespace, source: str, handler: Handler) -> int:
    examples, report, extra = handler(args)
    settings = {k: v for k, v in vars(args).items() if k not in ("func", "source", "command") and not callable(v)}
    doc = audit(source, report, settings, extra)
    report_path = args.report or _default_report(args.out)
    write_json(report_path, doc)
    for line in report.first_bad:
        print(f"skipped: {line}", file=sys.stderr)
    if not examples:
        raise LimaError(f"no examples kept from {doc['considered']} considered "
                        f"(rejected: {doc['rejected']}, unreadable: {doc['skipped_bad']}); see {report_path}")
    n = write_jsonl(args.out, (ex.to_dict() for ex in examples))
    print(f"{source}: kept {n} of {doc['considered']} {extra.get('unit', 'record')}s -> {args.out} "
          f"(report {report_path})", file=sys.stderr)
    return 0


def _default_report(out: str) -> str:
    return (out[:-len(".jsonl")] if out.endswith(".jsonl") else out) + ".report.json"


def run(argv: list[str]) -> int:
    """Run one of these subcommands from its arguments (``["wikihow", ...]``), outside ``lima-align curate``."""
    parser = argparse.ArgumentParser(prog="lima-align curate")
    register_sources(parser.add_subparsers(dest="source", required=True, metavar="SOURCE"))
    args = parser.parse_args(argv)
    return int(args.func(args))
