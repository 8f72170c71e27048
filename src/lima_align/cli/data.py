"""``lima-align data``: convert between conversation formats and print Table-1 statistics."""

from __future__ import annotations

import argparse
import json
import sys

from lima_align.conversation import OddTurns, ReadReport
from lima_align.formats.rows import FORMAT_NAMES, convert, iter_examples
from lima_align.curate.table1 import TokenizerCounter, WhitespaceCounter, format_table, table1

_ODD_HELP = ("examples ending on a user turn: 'keep' them as prompt-only (test sets), or 'drop' and count them "
             "(training sets); default %(default)s")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="convert conversation files, print statistics",
                            description="Conversation files: convert between formats, Table-1 statistics.")
    group = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    conv = group.add_parser("convert", help="convert a file to another format",
                            description="Convert conversations between formats. Formats: "
                                        + ", ".join(FORMAT_NAMES) + " (prompts is read-only).")
    conv.add_argument("input", help="input file (JSON, JSONL, .parquet) or saved dataset folder")
    conv.add_argument("output", help="output path (.json / .jsonl pick the container; a folder or .parquet "
                                     "for hf-dataset)")
    conv.add_argument("--to", required=True, choices=[f for f in FORMAT_NAMES if f != "prompts"],
                      help="output format")
    conv.add_argument("--from", dest="src_format", choices=FORMAT_NAMES,
                      help="input format (guessed from the first record when omitted)")
    _add_read_options(conv)
    conv.set_defaults(func=cmd_convert)

    stats = group.add_parser("stats", help="examples and average input/output tokens per source (Table 1)",
                             description="Per source and in total: examples, average input (user) tokens, "
                                         "average output (assistant) tokens, total tokens.")
    stats.add_argument("files", nargs="+", help="conversation files in any known format")
    stats.add_argument("--tokenizer", help="built-in model name, local folder or hub id; without it, "
                                           "whitespace-separated words are counted")
    stats.add_argument("--format", dest="src_format", choices=FORMAT_NAMES, help="input format (guessed)")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_read_options(stats)
    stats.set_defaults(func=cmd_stats)


def _add_read_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--odd-turns", choices=[p.value for p in OddTurns], default=OddTurns.KEEP.value,
                        help=_ODD_HELP)
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip and count malformed records instead of stopping at the first")


def _print_report(report: ReadReport) -> None:
    dropped = sum(report.dropped.values()) + sum(report.skipped_bad.values())
    if not dropped:
        return
    print(f"kept {report.kept:,}; dropped {dropped:,}:", file=sys.stderr)
    for reason, n in {**report.dropped, **report.skipped_bad}.items():
        print(f"  {n:,}  {reason}", file=sys.stderr)
    for line in report.first_bad:
        print(f"  e.g. {line}", file=sys.stderr)


def cmd_convert(args: argparse.Namespace) -> int:
    report = convert(args.input, args.output, args.to, src_format=args.src_format,
                     odd_turns=OddTurns(args.odd_turns), skip_bad=args.skip_bad)
    _print_report(report)
    print(f"wrote {report.kept:,} examples to {args.output} ({args.to})", file=sys.stderr)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    if args.tokenizer:
        from lima_align.models import load_tokenizer

        counter = TokenizerCounter(load_tokenizer(args.tokenizer), args.tokenizer)
    else:
        counter = WhitespaceCounter()
    report = ReadReport()
    examples = (ex for path in args.files
                for ex in iter_examples(path, args.src_format, odd_turns=OddTurns(args.odd_turns),
                                        report=report, skip_bad=args.skip_bad))
    result = table1(examples, counter)
    _print_report(report)
    if result.total.examples == 0:
        from lima_align.errors import LimaError

        raise LimaError("no examples in " + ", ".join(args.files))
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_table(result))
    return 0
