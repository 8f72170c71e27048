"""``lima-align chat``: a streaming multi-turn chat with a checkpoint in the terminal (:mod:`lima_align.generate.chat`)."""

from __future__ import annotations

import argparse
import sys

from lima_align.cli.generate import add_model_options, add_sampling_options, engine_from_args, sampling_from_args


def register(sub: argparse._SubParsersAction) -> None:
    chat = sub.add_parser(
        "chat", help="chat with a checkpoint in the terminal (streaming)",
        description="Multi-turn chat rendered with the training template. Commands: /reset, /save FILE "
                    "(append the transcript as a JSONL conversation row), /quit; Ctrl-D ends. Lines are read "
                    "from stdin, so a script can be piped in.")
    add_model_options(chat)
    add_sampling_options(chat)
    chat.set_defaults(func=cmd_chat)


def cmd_chat(args: argparse.Namespace) -> int:
    from lima_align.generate.chat import HELP, ChatSession, run_chat

    config = sampling_from_args(args)
    engine = engine_from_args(args)
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"lima-align chat with {args.model}; {HELP}", file=sys.stderr)
    stdin = _Terminal() if interactive else sys.stdin
    run_chat(engine, ChatSession(args.model, config), stdin, sys.stdout,
             reply_prefix="model> " if interactive else "")
    return 0


class _Terminal:
    """``readline()`` through input(), which gives line editing and history when readline is available."""

    def __init__(self) -> None:
        try:
            import readline  # noqa: F401
        except ImportError:
            pass

    def readline(self) -> str:
        try:
            return input("you> ") + "\n"
        except EOFError:
            print()
            return ""
