"""``lima-align serve``: a checkpoint behind an OpenAI-compatible HTTP API (:mod:`lima_align.generate.server`)."""

from __future__ import annotations

import argparse

from lima_align.cli.generate import add_model_options, add_sampling_options, engine_from_args, sampling_from_args


def register(sub: argparse._SubParsersAction) -> None:
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
    serve.add_argument("--max-body-bytes", type=int, default=1 << 20,
                       help="larger request bodies are refused with 413 before being read (default %(default)s)")
    add_sampling_options(serve)
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from lima_align.errors import LimaError
    from lima_align.generate.openai_api import ServerLimits
    from lima_align.generate.server import serve

    defaults = sampling_from_args(args)
    if args.max_tokens_cap < 1 or args.batch_size < 1 or args.max_body_bytes < 1:
        raise LimaError("--max-tokens-cap, --batch-size and --max-body-bytes must be >= 1")
    limits = ServerLimits(max_tokens=args.max_tokens_cap, system=args.system, max_body_bytes=args.max_body_bytes)
    engine = engine_from_args(args, args.batch_size)
    serve(engine, host=args.host, port=args.port, served_name=args.served_name or args.model,
          api_key=args.api_key, defaults=defaults, limits=limits, window_s=args.batch_window_ms / 1000)
    return 0
