"""``lima-align demo``: the whole pipeline on shipped real data, offline, on a CPU in about 11 minutes."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lima_align.pipeline.demo import DemoConfig


def register(sub: argparse._SubParsersAction) -> None:
    from lima_align.pipeline.demo import DemoConfig

    d = DemoConfig()
    parser = sub.add_parser("demo", help="the whole LIMA pipeline on shipped data (offline, CPU, ~11 min)",
                            description="Curate from real excerpts shipped with lima-align, mix a small set, "
                                        "fine-tune gemma-3-270m with the LIMA recipe shape (scaled down), "
                                        "generate before and after tuning, judge after vs before with the local "
                                        "judge, write an HTML report. Re-running skips completed stages.")
    parser.add_argument("--out", default=d.out, help="run folder (default %(default)s)")
    parser.add_argument("--model", default=d.model, help="base model to align (default %(default)s)")
    parser.add_argument("--judge-model", default=d.judge_model, help="local judge (default %(default)s)")
    parser.add_argument("--per-source", type=int, help=f"training candidates per source (default {d.per_source})")
    parser.add_argument("--max-chars", type=int,
                        help=f"leave out training examples longer than this, so each fits the trim whole "
                             f"(default {d.max_chars}; 0: keep all)")
    parser.add_argument("--lr", type=float, help=f"learning rate (default {d.lr:g})")
    parser.add_argument("--new-token-lr", type=float,
                        help=f"the EOT embedding row's learning rate (default {d.new_token_lr:g}; 0: the same as lr)")
    parser.add_argument("--test-prompts", type=int, help=f"held-out prompts (default {d.test_prompts})")
    parser.add_argument("--epochs", type=int, help=f"default {d.epochs}")
    parser.add_argument("--max-new-tokens", type=int, help=f"default {d.max_new_tokens}")
    parser.add_argument("--max-len", type=int, help=f"training trim in tokens (default {d.max_len})")
    parser.add_argument("--device", help="cpu, cuda ... (default: cuda when available)")
    parser.add_argument("--gpu", action="store_true",
                        help="the larger, non-demo setting (chosen automatically when a CUDA GPU is present)")
    parser.add_argument("--cpu-demo", action="store_true", help="keep the CPU demo setting even on a GPU host")
    parser.set_defaults(func=cmd_demo)


def demo_config(args: argparse.Namespace, cuda: bool) -> "DemoConfig":
    """The demo's settings from the options (0 for --max-chars / --new-token-lr: off)."""
    from lima_align.pipeline.demo import DemoConfig

    chosen = {k: v for k, v in {"per_source": args.per_source, "test_prompts": args.test_prompts,
                                "epochs": args.epochs, "max_new_tokens": args.max_new_tokens,
                                "max_len": args.max_len, "lr": args.lr}.items() if v is not None}
    for name in ("max_chars", "new_token_lr"):
        if getattr(args, name) is not None:
            chosen[name] = getattr(args, name) or None
    chosen.update(out=args.out, model=args.model, judge_model=args.judge_model, device=args.device)
    use_gpu = args.gpu or (cuda and not args.cpu_demo)
    return DemoConfig.gpu(**chosen) if use_gpu else DemoConfig(**chosen)


def cmd_demo(args: argparse.Namespace) -> int:
    import torch

    from lima_align.pipeline.demo import run_demo

    cfg = demo_config(args, torch.cuda.is_available())
    results = run_demo(cfg)
    summary, train = results["summary"], results["train"]
    stop, loss = summary["eot_stop_rate"], summary["reference_loss"]
    print(f"\ndone. training loss {_f(train.get('first_loss'))} -> {_f(train.get('last_loss'))}")
    print(f"  stops at EOT      : {_f(stop['before'])} before -> {_f(stop['after'])} after tuning (share of held-out answers)")
    print(f"  reference loss    : {_f(loss['before'])} before -> {_f(loss['after'])} after (nats per token, lower = closer)")
    print(f"  judge (weighted)  : after preferred {_f(summary['after_preferred'])} (0.5 = no preference; a 135M judge)")
    print(f"report              : {summary['report']}")
    return 0


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"
