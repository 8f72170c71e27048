"""``lima-align ablate ABLATION.yaml``: the paper's ablations (arms trained alike, Likert-judged, plotted)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ablate", help="run an ablation: per arm mix -> train -> generate -> Likert judge; plot",
                            description="Run the arms of an ablation (configs/ablations/*.yaml) one after the "
                                        "other: build each arm's mix, fine-tune the same base model with identical "
                                        "hyperparameters, sample N answers per test prompt, grade them 1-6 with "
                                        "the Likert judge, then plot every arm's mean with its 95% CI and write "
                                        "ablation-summary.json/.md. Re-running skips completed stages and arms. "
                                        "parallel=N runs N arms at once, one process each (devices=[cuda:0,...]).")
    parser.add_argument("config", metavar="ABLATION.yaml", help="ablation config (see configs/ablations/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. out=runs/abl samples=3 train.epochs=2 sampling.max_new_tokens=256")
    parser.add_argument("--arm", metavar="NAME", help="run only this arm's stages (no plot): what each process "
                                                      "of a parallel ablation runs")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.set_defaults(func=cmd_ablate)


def cmd_ablate(args: argparse.Namespace) -> int:
    from lima_align.pipeline.ablate import load_ablation, run_ablation
    from lima_align.config import dump_yaml

    cfg = load_ablation(args.config, args.overrides)
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    if args.arm:
        result = run_ablation(cfg, only_arm=args.arm)
        print(f"\ndone: arm {args.arm}: {result.get('summary', '')}")
        return 0
    summary = run_ablation(cfg)
    print(f"\ndone: {len(summary['arms'])} arm(s); plot {summary['figures'][0]}")
    return 0
