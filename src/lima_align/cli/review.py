"""``lima-align review FILE --out accepted.jsonl``: the terminal review queue (argument parsing only)."""

from __future__ import annotations

import argparse

from lima_align.conversation import OddTurns
from lima_align.curate.review import review
from lima_align.formats.rows import read_examples


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "review", help="accept / reject / edit candidates one by one (resumable)",
        description="Review candidates one by one: accept, reject, edit in $EDITOR, skip, quit. Decisions are "
                    "saved as they are made (OUT.decisions.jsonl); run the same command again to resume.")
    parser.add_argument("file", help="candidate conversations (JSONL from lima-align curate, or any known format)")
    parser.add_argument("--out", required=True, help="accepted (and edited) examples, JSONL")
    parser.set_defaults(func=cmd_review)


def cmd_review(args: argparse.Namespace) -> int:
    candidates = read_examples(args.file, odd_turns=OddTurns.KEEP)  # prompt-only test candidates are reviewed too
    review(candidates, args.out)
    return 0
