"""``lima-align report``: figures, tables and an HTML page from judgments files (:mod:`lima_align.report`)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="figures, tables and an HTML page from judgments files")
    r.add_argument("judgments", nargs="+", help="judgments JSONL files")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--title", default="lima-align evaluation")
    r.add_argument("--outputs", nargs="+", default=[], metavar="OUTPUTS",
                   help="generation outputs files (any answers format): their judge-free alignment metrics (stop "
                        "rate, continuation, format markers, distinct-2, lengths, refusals) join the report")
    r.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from lima_align.report.build import build_report
    from lima_align.report.text import summary_lines

    written = build_report(args.judgments, args.out, title=args.title, outputs=args.outputs)
    for line in summary_lines(json.loads((Path(args.out) / "summary.json").read_text(encoding="utf-8"))):
        print(line)
    for path in written:
        print(path)
    return 0
