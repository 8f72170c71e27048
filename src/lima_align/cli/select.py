"""``lima-align select``: pick the best checkpoint of a training run by a judge on dev prompts, never by loss
(:mod:`lima_align.pipeline.selection`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lima_align.cli.generate import (add_engine_options, add_sampling_options, engine_options_from_args,
                                     sampling_from_args)
from lima_align.cli.judge import add_judge_options, judge_setup


def register(sub: argparse._SubParsersAction) -> None:
    sel = sub.add_parser("select", help="pick the best checkpoint of a run by a judge (never by loss)",
                         description="Answer the dev prompts with every checkpoint in the epoch window, decoded "
                                     "like the evaluation (the sampling options below, the paper's by default; "
                                     "--greedy only when asked), judge them, and pick the best (ties: the "
                                     "earlier epoch).")
    sel.add_argument("run_dir", help="training run folder with checkpoint-* folders")
    sel.add_argument("--dev", required=True, help="dev prompts")
    sel.add_argument("--epochs", default="5-10", help="epoch window (default %(default)s, the paper's)")
    sel.add_argument("--method", choices=("likert", "pairwise"), default="likert",
                     help="Likert mean, or a pairwise round-robin (default %(default)s)")
    sel.add_argument("--greedy", action="store_true", help="decode the dev answers greedily (temperature 0)")
    sel.add_argument("--device", help="generation device")
    add_sampling_options(sel)
    add_engine_options(sel)
    add_judge_options(sel, out_required=False)
    sel.add_argument("--out", help="output folder (default RUN_DIR/select)")
    sel.set_defaults(func=cmd_select)


def cmd_select(args: argparse.Namespace) -> int:
    from lima_align.pipeline.selection import SelectOptions, dev_decoding, parse_epochs, select_checkpoint

    options = SelectOptions(epochs=parse_epochs(args.epochs), method=args.method, device=args.device,
                            sampling=dev_decoding(sampling_from_args(args), greedy=args.greedy), limit=args.limit,
                            engine=engine_options_from_args(args))
    result = select_checkpoint(args.run_dir, args.dev, judge_setup(args), options,
                               out=args.out or Path(args.run_dir) / "select")
    print(json.dumps(result, indent=2))
    return 0
