"""The ``lima-align`` command line: parses arguments and calls the library; no logic lives here.

Each command is a module with ``register(subparsers)``; a command's handler takes the parsed arguments and
returns an exit code. User errors (:class:`~lima_align.errors.LimaError`) print one line and exit with code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys

from lima_align import __version__
from lima_align.cli import (ablate, annotate, chat, curate, data, demo, export, generate, judge, mix, models, report,
                            review, run, select, serve, train)
from lima_align.errors import LimaError

GROUPS = (demo, run, data, models, curate, mix, review, train, generate, chat, serve, judge, report, select,
          export, annotate, ablate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lima-align",
        description="LIMA (Less Is More for Alignment) end to end: curate, train, generate, evaluate.")
    parser.add_argument("--version", action="version", version=f"lima-align {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options too (`train CONFIG --out X epochs=3`): argparse stops filling a
    # positional list at the first option, so the rest arrives here
    overrides = [item for item in extra if "=" in item and not item.startswith("-")]
    if overrides and isinstance(getattr(args, "overrides", None), list):
        args.overrides += overrides
        extra = [item for item in extra if item not in overrides]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except LimaError as exc:
        if args.debug:
            raise
        print(f"lima-align: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lima-align: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
