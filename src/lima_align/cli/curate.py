"""``lima-align curate <source>``: turn raw community dumps into LIMA-style candidate examples."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("curate", help="build candidate examples from raw source dumps",
                            description="Build LIMA-style candidates (conversation JSONL + audit report) "
                                        "from raw source dumps on disk.")
    sources = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    del sources  # each source module adds its subcommand here
