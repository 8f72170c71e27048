"""``lima-align models``: the built-in offline models."""

from __future__ import annotations

import argparse
import json

from lima_align.errors import LimaError
from lima_align.models import BUILTINS, list_models, materialise_builtin


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list or prepare the built-in offline models",
                            description="Built-in models ship inside PyPI packages (GGUF) and are converted "
                                        "once into a safetensors folder in the cache ($LIMA_ALIGN_CACHE or "
                                        "~/.cache/lima-align).")
    group = parser.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    ls = group.add_parser("list", help="built-in models: installed, cached, size")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=cmd_list)
    prep = group.add_parser("prepare", help="convert a built-in model into the cache now")
    prep.add_argument("names", nargs="*", metavar="NAME",
                      help=f"built-in names (default: all): {', '.join(BUILTINS)}")
    prep.set_defaults(func=cmd_prepare)


def _size(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f} MiB"


def cmd_list(args: argparse.Namespace) -> int:
    rows = list_models()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        state = ("cached" if row["cached"] else "not cached") if row["installed"] else "not installed"
        print(f"{row['name']:<24} {state:<14} {_size(row['size_bytes']):>10}  {row['description']}")
        if row["path"]:
            print(f"{'':<24} {row['path']}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    unknown = [n for n in args.names if n not in BUILTINS]
    if unknown:
        raise LimaError(f"unknown built-in model {unknown[0]!r}; built-in models: {', '.join(BUILTINS)}")
    for name in args.names or list(BUILTINS):
        print(f"{name}: {materialise_builtin(name)}")
    return 0
