"""``lima-align judge pairwise|absolute|likert|multiturn|calibrate``: parse arguments, call
:mod:`lima_align.evaluate`. The judge options (:func:`add_judge_options`, :func:`judge_setup`) are shared with
``lima-align select``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_judge_options(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    g = p.add_argument_group("judge")
    g.add_argument("--judge", help="judge YAML (configs/judges/*.yaml); options below override it")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a judge config key (e.g. --set concurrency=32)")
    g.add_argument("--base-url", help="OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1)")
    g.add_argument("--model", help="judge model name")
    g.add_argument("--api-key-env", help="environment variable holding the API key")
    g.add_argument("--mode", choices=("generate", "weighted"),
                   help="verdict from the reply's text (generate) or from the verdict tokens' probabilities "
                        "(weighted); default: weighted for a local judge, generate for an endpoint")
    g.add_argument("--cache", default=".lima-judge-cache.sqlite", help="judge call cache (default %(default)s)")
    g.add_argument("--no-cache", action="store_true", help="call the judge for everything")
    g.add_argument("--template", help="judge prompt YAML replacing the built-in one")
    g.add_argument("--limit", type=int, help="judge only the first N items")
    if out_required:
        p.add_argument("--out", required=True, help="judgments JSONL (appended to; resumable)")


def judge_setup(args: argparse.Namespace):
    from lima_align.evaluate.judge_config import load_judge_config
    from lima_align.evaluate.judging import JudgeSetup

    overrides = list(args.set)
    for key in ("base_url", "model", "api_key_env", "mode"):
        if getattr(args, key, None):
            overrides.append(f"{key}={getattr(args, key)}")
    config = load_judge_config(args.judge, overrides)
    print(f"judge: {json.dumps(config.provenance())}", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        print(f"\rjudged {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    return JudgeSetup(config, None if args.no_cache else Path(args.cache), progress=progress)


def _finish(report, extra: dict | None = None) -> int:
    print(json.dumps({**report.to_dict(), **(extra or {})}), file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    judge = sub.add_parser("judge", help="judge model outputs with an LLM (pairwise, absolute, likert, ...)",
                           description="Judge outputs with any OpenAI-compatible endpoint or a local model. "
                                       "Every call is cached; re-running resumes the judgments file.")
    jsub = judge.add_subparsers(dest="protocol", required=True, metavar="PROTOCOL")

    p = jsub.add_parser("pairwise", help="A vs B in both orders (the paper's instruction)")
    p.add_argument("--a", required=True, help="outputs of the model under test")
    p.add_argument("--b", required=True, help="outputs to compare with (e.g. text_davinci_003_model_outputs.json)")
    p.add_argument("--sample", type=int, default=0, help="which sample of --a to judge (default 0)")
    add_judge_options(p)
    p.set_defaults(func=cmd_pairwise)

    for name, help_ in (("absolute", "Fail / Pass / Excellent (--safety: safe / unsafe)"),
                        ("likert", "1-6 helpfulness score, every sample of every prompt")):
        s = jsub.add_parser(name, help=help_)
        s.add_argument("--outputs", required=True, help="answers to rate (generation outputs or any format)")
        if name == "absolute":
            s.add_argument("--safety", action="store_true", help="the safety variant for sensitive prompts")
        else:
            s.add_argument("--judge-samples", type=int, default=1, help="judge draws per answer (default 1)")
        add_judge_options(s)
        s.set_defaults(func=cmd_single, name=name)

    m = jsub.add_parser("multiturn", help="rate each assistant turn of conversations")
    m.add_argument("--conversations", required=True, help="full conversations (any conversation format)")
    add_judge_options(m)
    m.set_defaults(func=cmd_multiturn)

    c = jsub.add_parser("calibrate", help="agreement of a judge with human-labelled pairs")
    c.add_argument("--hhh", help="BIG-bench hhh_alignment folder (task.json files)")
    c.add_argument("--pairs", help="JSONL of {id, prompt, a, b, human: a|b|tie}")
    add_judge_options(c)
    c.set_defaults(func=cmd_calibrate)



def cmd_pairwise(args: argparse.Namespace) -> int:
    from lima_align.evaluate.judging import judge_pairwise

    report, pairing = judge_pairwise(judge_setup(args), args.a, args.b, args.out, sample=args.sample,
                                     limit=args.limit, template=args.template)
    return _finish(report, {"pairing": pairing})


def cmd_single(args: argparse.Namespace) -> int:
    from lima_align.evaluate.judging import judge_single

    protocol = "safety" if getattr(args, "safety", False) else args.name
    report = judge_single(judge_setup(args), protocol, args.outputs, args.out, limit=args.limit,
                          judge_samples=getattr(args, "judge_samples", 1), template=args.template)
    return _finish(report)


def cmd_multiturn(args: argparse.Namespace) -> int:
    from lima_align.evaluate.judging import judge_multiturn

    return _finish(judge_multiturn(judge_setup(args), args.conversations, args.out, limit=args.limit,
                                   template=args.template))


def cmd_calibrate(args: argparse.Namespace) -> int:
    from lima_align.errors import LimaError
    from lima_align.evaluate.calibrate import calibration_summary, load_hhh, load_labelled_pairs
    from lima_align.evaluate.judging import judge_answer_pairs, read_rows

    if not (args.hhh or args.pairs):
        raise LimaError("give --hhh FOLDER and/or --pairs FILE")
    items = (load_hhh(args.hhh) if args.hhh else []) + (load_labelled_pairs(args.pairs) if args.pairs else [])
    items = items[:args.limit] if args.limit else items
    report = judge_answer_pairs(judge_setup(args), [(a, b) for a, b, _ in items], args.out, args.template)
    human = {a.id: label for a, _b, label in items}
    rows = [r for r in read_rows(args.out) if r["id"] in human]
    summary = calibration_summary(rows, human)
    print(json.dumps(summary, indent=2))
    lo, hi = summary["accuracy_ci95"]
    print(f"accuracy {summary['accuracy']:.3f} [95% Wilson {lo:.3f}, {hi:.3f}] on {summary['judged']} of "
          f"{summary['items']} (missing {summary['missing']}), position consistency "
          f"{summary['position_consistency']:.3f}, first-position rate {summary['first_position_rate']:.3f}, "
          f"longer answer wins {summary['longer_wins_rate']:.3f}", file=sys.stderr)
    return _finish(report)
