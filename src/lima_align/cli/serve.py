"""``lima-align chat`` (interactive terminal chat) and ``lima-align serve`` (OpenAI-compatible HTTP API)."""

from __future__ import annotations

import argparse
import sys

from lima_align.cli.generate import add_model_options, add_sampling_options, sampling_from_args


def register(sub: argparse._SubParsersAction) -> None:
    chat = sub.add_parser(
        "chat", help="chat with a checkpoint in the terminal (streaming)",
        description="Multi-turn chat rendered with the training template. Commands: /reset, /save FILE "
                    "(append the transcript as a JSONL conversation row), /quit; Ctrl-D ends. Lines are read "
                    "from stdin, so a script can be piped in.")
    add_model_options(chat)
    add_sampling_options(chat)
    chat.set_defaults(func=cmd_chat)

    serve = sub.add_parser(
        "serve", help="serve a checkpoint with an OpenAI-compatible API",
        description="OpenAI-compatible /v1/chat/completions (streaming and not), /v1/models and /health. "
                    "Concurrent requests are batched. The sampling options are the defaults a request may "
                    "override (--seed is not used: a request without a seed gets a random one).")
    add_model_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="default %(default)s")
    serve.add_argument("--port", type=int, default=8000, help="default %(default)s")
    serve.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 routes")
    serve.add_argument("--served-name", help="the model name clients ask for (default: the --model value)")
    serve.add_argument("--batch-size", type=int, default=16, help="most rows decoded together (default 16)")
    serve.add_argument("--batch-window-ms", type=float, default=10.0,
                       help="how long to wait for more requests before a batch starts (default %(default)s)")
    serve.add_argument("--max-tokens-cap", type=int, default=2048,
                       help="largest max_tokens a request may ask for (default %(default)s)")
    serve.add_argument("--system", choices=("reject", "ignore"), default="reject",
                       help="a leading system message: 400 (default), or drop it")
    add_sampling_options(serve)
    serve.set_defaults(func=cmd_serve)


def _engine(args: argparse.Namespace, batch_size: int = 1):
    from lima_align.generate.engine import HFEngine
    from lima_align.generate.loading import load_for_generation

    model, tokenizer, fmt = load_for_generation(args.model, add_eot=args.add_eot, device=args.device)
    return HFEngine(model, tokenizer, fmt, batch_size=batch_size)


def cmd_chat(args: argparse.Namespace) -> int:
    from lima_align.generate.chat import HELP, ChatSession, run_chat

    config = sampling_from_args(args)
    engine = _engine(args)
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


def cmd_serve(args: argparse.Namespace) -> int:
    from lima_align.errors import LimaError
    from lima_align.generate.openai_api import ServerLimits
    from lima_align.generate.server import serve

    defaults = sampling_from_args(args)
    if args.max_tokens_cap < 1 or args.batch_size < 1:
        raise LimaError("--max-tokens-cap and --batch-size must be >= 1")
    limits = ServerLimits(max_tokens=args.max_tokens_cap, system=args.system)
    engine = _engine(args, args.batch_size)
    serve(engine, host=args.host, port=args.port, served_name=args.served_name or args.model,
          api_key=args.api_key, defaults=defaults, limits=limits, window_s=args.batch_window_ms / 1000)
    return 0
