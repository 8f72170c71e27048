"""``python -m lima_align.train CONFIG [key=value ...]``: the entry point for ``accelerate launch``/``torchrun``."""

from __future__ import annotations

import argparse
import sys

from lima_align.config import dump_yaml
from lima_align.errors import LimaError
from lima_align.train.options import config_from_args
from lima_align.train.run import end_distributed, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lima_align.train", description=__doc__)
    parser.add_argument("config", nargs="?")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    for name in ("data", "model", "out"):
        parser.add_argument(f"--{name}")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args.config, args.overrides, data=args.data, model=args.model, out=args.out)
        import os

        if os.environ.get("RANK", "0") == "0":
            print("# resolved config\n" + dump_yaml(config), flush=True)
        result = train(config, resume=args.resume)
        end_distributed()
    except LimaError as exc:
        print(f"lima-align: error: {exc}", file=sys.stderr)
        return 2
    if getattr(result, "interrupted", False):  # saved and stopped: not done (a pipeline must not move on)
        print(f"stopped by SIGTERM after saving: {result.global_step} steps; --resume continues", file=sys.stderr)
        return 143
    print(f"done: {result.global_step} steps, train loss {result.train_loss}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
