"""``lima-align curate <source>``: turn raw community dumps into LIMA-style candidate examples.

Argument parsing only: each subcommand's options are its source's config fields (see :mod:`lima_align.sources`),
so the parsed arguments become the config by name; :func:`lima_align.sources.curate_to_files` runs the source and
writes the conversation JSONL and the audit report. Empty output is an error (exit 2), except for Stack Exchange,
which writes the empty file and exits 1 with a warning.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from tqdm import tqdm

from lima_align.sources import Curated, NothingKept, curate_to_files, default_report, source_config
from lima_align.sources.authored import AuthoredConfig
from lima_align.sources.dialogue import DialogueConfig
from lima_align.sources.natural_instructions import NaturalInstructionsConfig
from lima_align.sources.reddit import ASKREDDIT, WRITINGPROMPTS, RedditConfig
from lima_align.sources.stackexchange import StackExchangeConfig, run_config, total_bytes
from lima_align.sources.wikihow import WikiHowConfig

_ARGPARSE_KEYS = ("func", "source", "command", "debug")  # the parsers' own keys, not source options
_SE = StackExchangeConfig()
_Subparsers = argparse._SubParsersAction


def register(sub: _Subparsers) -> None:
    parser = sub.add_parser("curate", help="build candidate examples from raw source dumps",
                            description="Build LIMA-style candidates (conversation JSONL + audit report) "
                                        "from raw source dumps on disk.")
    sources = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    _register_stackexchange(sources)
    _register_natural_instructions(sources)
    _register_wikihow(sources)
    _register_reddit(sources)
    _register_authored(sources)
    _register_dialogue(sources)


def config_from_args(args: argparse.Namespace, command: str, positional: str) -> Any:
    """The source's typed config from the parsed arguments, by option name."""
    skip = {*_ARGPARSE_KEYS, positional, "out", "report"}
    return source_config(command, {k: v for k, v in vars(args).items() if k not in skip}, "command line")


# ------------------------------------------------------------------------------------------- stackexchange
def _register_stackexchange(sources: _Subparsers) -> None:
    p = sources.add_parser(
        "stackexchange", help="Stack Exchange site dumps -> LIMA candidates",
        description="Select LIMA Stack Exchange pairs from site dumps (each PATH: a <site>.7z archive, a "
                    "directory holding Posts.xml, or a Posts.xml file; the site name comes from the archive or "
                    "directory name). Defaults are the paper's: top answer score >= 10, 1,200-4,096 "
                    "characters, no first person, no references to other answers or the site, 200 per group "
                    "(STEM, Other) by temperature sampling over sites with tau = 3.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="site dumps (.7z, directory or Posts.xml)")
    p.add_argument("--out", required=True, help="output conversation JSONL")
    p.add_argument("--report", help="write the audit report (JSON) here")
    p.add_argument("--site", action="append", default=[], metavar="NAME",
                   help="site name for each PATH, in order (default: from the file or directory name)")
    p.add_argument("--site-groups", metavar="CSV", help="CSV site,group[,note] overriding the shipped "
                   "STEM/Other/excluded table")
    p.add_argument("--min-score", type=int, default=_SE.min_score, help="minimum score of the top answer (default: %(default)s)")
    p.add_argument("--min-chars", type=int, default=_SE.min_chars, help="minimum answer length (characters) (default: %(default)s)")
    p.add_argument("--max-chars", type=int, default=_SE.max_chars, help="maximum answer length (characters) (default: %(default)s)")
    p.add_argument("--allow-first-person", action="store_true", help="keep first-person answers")
    p.add_argument("--allow-references", action="store_true",
                   help="keep answers that refer to other answers or the site")
    p.add_argument("--title-prob", type=float, default=_SE.title_prob,
                   help="probability that a prompt is the question title (else its body) (default: %(default)s)")
    p.add_argument("--per-group", type=int, default=_SE.per_group, help="examples sampled per group (default: %(default)s)")
    p.add_argument("--tau", type=float, default=_SE.tau, help="sampling temperature over sites (default: %(default)s)")
    p.add_argument("--seed", type=int, default=_SE.seed, help="seed of the prompt coin and the sampling (default: %(default)s)")
    p.add_argument("--workers", type=int, default=_SE.workers,
                   help="processes: sites, and byte ranges of a large Posts.xml, are read in parallel; the result "
                   "is the same for any number (default: %(default)s)")
    p.add_argument("--min-span-mb", type=float, default=_SE.min_span_mb,
                   help="with --workers, a Posts.xml is cut into ranges of at least this many MB "
                   "(default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=stackexchange)


def stackexchange(args: argparse.Namespace) -> int:
    """Handler of ``curate stackexchange``: print the config, run with a progress bar, print a summary."""
    cfg = config_from_args(args, "stackexchange", "paths")
    print(f"curate stackexchange: {json.dumps(run_config(args.paths, cfg))}", file=sys.stderr)
    with tqdm(total=total_bytes(args.paths, cfg), unit="B", unit_scale=True,
              disable=None if cfg.progress else True, desc="Posts.xml", file=sys.stderr) as bar:
        result = curate_to_files("stackexchange", args.paths, cfg, args.out, args.report, bar.update,
                                 allow_empty=True)
    totals = result.report["totals"]
    per_group = {g: s["sampled"] for g, s in result.report["sampling"].items()}
    print(f"wrote {totals['examples_written']} examples to {args.out} ({per_group}); "
          f"{totals['questions_kept']} of {totals['questions_considered']} questions passed the filters",
          file=sys.stderr)
    if totals["examples_written"] == 0:
        top = ", ".join(f"{k} {v}" for k, v in list(totals["questions_rejected"].items())[:4]) or "no sites read"
        print(f"lima-align: warning: no example passed the filters (most rejections: {top}); "
              "see the report, or relax --min-score / --min-chars", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------- the single-pass sources
def _add(sources: _Subparsers, name: str, help_text: str, positional: str,
         default_out: str) -> argparse.ArgumentParser:
    """A subcommand with the options every single-pass source has (``--out --report --seed --strict``)."""
    parser = sources.add_parser(name, help=help_text, description=help_text,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default=default_out, help="output conversation JSONL (default %(default)s)")
    parser.add_argument("--report", help="audit report JSON (default: OUT with .report.json)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first unreadable record or file instead of skipping and counting it")
    parser.set_defaults(func=_handler(name, positional))
    return parser


def _handler(command: str, positional: str) -> Callable[[argparse.Namespace], int]:
    return lambda args: curate(args, command, positional)


def curate(args: argparse.Namespace, command: str, positional: str) -> int:
    """Handler of the single-pass sources: run, show warnings and skipped records, print a summary."""
    cfg = config_from_args(args, command, positional)
    try:
        result = curate_to_files(command, getattr(args, positional), cfg, args.out, args.report)
    except NothingKept as exc:
        _show(exc.curated)
        raise
    _show(result)
    report = result.report
    print(f"{command}: kept {len(result.examples)} of {report['considered']} {report.get('unit', 'record')}s "
          f"-> {args.out} (report {args.report or default_report(args.out)})", file=sys.stderr)
    return 0


def _show(result: Curated) -> None:
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for line in result.report["first_bad"]:
        print(f"skipped: {line}", file=sys.stderr)


def _register_natural_instructions(sources: _Subparsers) -> None:
    p = _add(sources, "natural-instructions",
             "Super-NaturalInstructions: one random instance from each natural-language generation task",
             "inputs", "natural_instructions.jsonl")
    p.add_argument("inputs", nargs="+", help="task .json files or directories of them (either schema)")
    p.add_argument("--tasks", type=int, default=NaturalInstructionsConfig.tasks,
                   help="number of tasks (one example each)")
    p.add_argument("--categories", help="file of generation category names, one a line (default: the shipped "
                                        "sni_generation_categories.txt)")


def _register_wikihow(sources: _Subparsers) -> None:
    p = _add(sources, "wikihow", "wikiHow: category first, then an article; title as the question, pruned body "
                                 "with numbered steps as the answer", "inputs", "wikihow.jsonl")
    p.add_argument("inputs", nargs="+", help="article files: CSV (title,headline,text), JSON or JSONL scrapes")
    p.add_argument("--index", help="CSV of Category,Title,Link used to find each article's category")
    p.add_argument("--category-table", help="CSV category,top_level replacing rows of the shipped table")
    p.add_argument("-n", "--n", type=int, default=WikiHowConfig.n, help="articles to sample")
    p.add_argument("--min-chars", type=int, default=WikiHowConfig.min_chars,
                   help="minimum response length in characters after pruning")
    p.add_argument("--no-uncategorized", action="store_true",
                   help="reject articles with no category instead of sampling them as one extra category")


def _register_reddit(sources: _Subparsers) -> None:
    d = RedditConfig()
    p = _add(sources, "reddit", "Reddit (Pushshift dumps): r/WritingPrompts story candidates or r/AskReddit "
                                "title-only test prompts, most upvoted first, for hand review", "inputs",
             "reddit.jsonl")
    p.add_argument("inputs", nargs="+", help="RS_*/RC_* dumps (.zst or plain NDJSON) and/or a WritingPrompts CSV")
    p.add_argument("--subreddit", choices=[WRITINGPROMPTS, ASKREDDIT], default=d.subreddit)
    p.add_argument("--min-prompt-score", type=int, default=d.min_prompt_score)
    p.add_argument("--min-story-score", type=int, default=d.min_story_score)
    p.add_argument("--min-words", type=int, default=d.min_words, help="story length bounds (words)")
    p.add_argument("--max-words", type=int, default=d.max_words)
    p.add_argument("--max-candidates", type=int,
                   help="candidates kept, most upvoted first (default: 450 for writingprompts, 210 for askreddit: "
                        "3x the paper's 150 and 70, for hand selection)")


def _register_authored(sources: _Subparsers) -> None:
    p = _add(sources, "authored", "hand-written examples (Markdown with front matter, or YAML) to conversation "
                                  "JSONL, with style warnings", "inputs", "authored.jsonl")
    p.add_argument("inputs", nargs="+", help="example files (.md, .yaml) or directories of them")
    p.add_argument("--license", default=AuthoredConfig.license, help="licence of the authored texts")
    p.add_argument("--min-words", type=int, default=AuthoredConfig.min_words,
                   help="answers shorter than this get a too_short warning")


def _register_dialogue(sources: _Subparsers) -> None:
    p = _add(sources, "dialogue", "multi-turn candidates from Stack Exchange comment threads (asker and answerer "
                                  "alternating), to edit into the assistant style", "dumps", "dialogue.jsonl")
    p.add_argument("dumps", nargs="+", help="site dump folders holding Posts.xml and Comments.xml")
    p.add_argument("--min-turns", type=int, default=DialogueConfig.min_turns, help="shortest chain kept (turns)")
