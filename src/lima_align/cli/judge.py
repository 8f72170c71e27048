"""``lima-align judge pairwise|absolute|likert|multiturn|calibrate``, ``lima-align report`` and
``lima-align select``: parse arguments, call :mod:`lima_align.evaluate` / :mod:`lima_align.report`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _judge_options(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    g = p.add_argument_group("judge")
    g.add_argument("--judge", help="judge YAML (configs/judges/*.yaml); options below override it")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a judge config key (e.g. --set concurrency=32)")
    g.add_argument("--base-url", help="OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1)")
    g.add_argument("--model", help="judge model name")
    g.add_argument("--api-key-env", help="environment variable holding the API key")
    g.add_argument("--cache", default=".lima-judge-cache.sqlite", help="judge call cache (default %(default)s)")
    g.add_argument("--no-cache", action="store_true", help="call the judge for everything")
    g.add_argument("--template", help="judge prompt YAML replacing the built-in one")
    g.add_argument("--limit", type=int, help="judge only the first N items")
    if out_required:
        p.add_argument("--out", required=True, help="judgments JSONL (appended to; resumable)")


def _setup(args: argparse.Namespace):
    from lima_align.evaluate.judge_config import load_judge_config
    from lima_align.evaluate.judging import JudgeSetup

    overrides = list(args.set)
    for key in ("base_url", "model", "api_key_env"):
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
    _judge_options(p)
    p.set_defaults(func=cmd_pairwise)

    for name, help_ in (("absolute", "Fail / Pass / Excellent (--safety: safe / unsafe)"),
                        ("likert", "1-6 helpfulness score, every sample of every prompt")):
        s = jsub.add_parser(name, help=help_)
        s.add_argument("--outputs", required=True, help="answers to rate (generation outputs or any format)")
        if name == "absolute":
            s.add_argument("--safety", action="store_true", help="the safety variant for sensitive prompts")
        else:
            s.add_argument("--judge-samples", type=int, default=1, help="judge draws per answer (default 1)")
        _judge_options(s)
        s.set_defaults(func=cmd_single, name=name)

    m = jsub.add_parser("multiturn", help="rate each assistant turn of conversations")
    m.add_argument("--conversations", required=True, help="full conversations (any conversation format)")
    _judge_options(m)
    m.set_defaults(func=cmd_multiturn)

    c = jsub.add_parser("calibrate", help="agreement of a judge with human-labelled pairs")
    c.add_argument("--hhh", help="BIG-bench hhh_alignment folder (task.json files)")
    c.add_argument("--pairs", help="JSONL of {id, prompt, a, b, human: a|b|tie}")
    _judge_options(c)
    c.set_defaults(func=cmd_calibrate)

    r = sub.add_parser("report", help="figures, tables and an HTML page from judgments files")
    r.add_argument("judgments", nargs="+", help="judgments JSONL files")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--title", default="lima-align evaluation")
    r.set_defaults(func=cmd_report)

    sel = sub.add_parser("select", help="pick the best checkpoint of a run by a judge (never by loss)")
    sel.add_argument("run_dir", help="training run folder with checkpoint-* folders")
    sel.add_argument("--dev", required=True, help="dev prompts")
    sel.add_argument("--epochs", default="5-10", help="epoch window (default %(default)s, the paper's)")
    sel.add_argument("--method", choices=("likert", "pairwise"), default="likert",
                     help="Likert mean, or a pairwise round-robin (default %(default)s)")
    sel.add_argument("--max-new-tokens", type=int, default=512, help="answer length cap (default %(default)s)")
    sel.add_argument("--device", help="generation device")
    _judge_options(sel, out_required=False)
    sel.add_argument("--out", help="output folder (default RUN_DIR/select)")
    sel.set_defaults(func=cmd_select)


def cmd_pairwise(args: argparse.Namespace) -> int:
    from lima_align.evaluate.judging import judge_pairwise

    report, pairing = judge_pairwise(_setup(args), args.a, args.b, args.out, sample=args.sample,
                                     limit=args.limit, template=args.template)
    return _finish(report, {"pairing": pairing})


def cmd_single(args: argparse.Namespace) -> int:
    from lima_align.evaluate.judging import judge_single

    protocol = "safety" if getattr(args, "safety", False) else args.name
    report = judge_single(_setup(args), protocol, args.outputs, args.out, limit=args.limit,
                          judge_samples=getattr(args, "judge_samples", 1), template=args.template)
    return _finish(report)


def cmd_multiturn(args: argparse.Namespace) -> int:
    from lima_align.evaluate.judging import judge_multiturn

    return _finish(judge_multiturn(_setup(args), args.conversations, args.out, limit=args.limit,
                                   template=args.template))


def cmd_calibrate(args: argparse.Namespace) -> int:
    from lima_align.errors import LimaError
    from lima_align.evaluate.calibrate import calibration_summary, load_hhh, load_labelled_pairs
    from lima_align.evaluate.judging import judge_answer_pairs, read_rows

    if not (args.hhh or args.pairs):
        raise LimaError("give --hhh FOLDER and/or --pairs FILE")
    items = (load_hhh(args.hhh) if args.hhh else []) + (load_labelled_pairs(args.pairs) if args.pairs else [])
    items = items[:args.limit] if args.limit else items
    report = judge_answer_pairs(_setup(args), [(a, b) for a, b, _ in items], args.out, args.template)
    human = {a.id: label for a, _b, label in items}
    rows = [r for r in read_rows(args.out) if r["id"] in human]
    summary = calibration_summary(rows, human)
    print(json.dumps(summary, indent=2))
    return _finish(report)


def cmd_report(args: argparse.Namespace) -> int:
    from lima_align.report.build import build_report

    written = build_report(args.judgments, args.out, title=args.title)
    for path in written:
        print(path)
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from lima_align.pipeline.selection import SelectOptions, parse_epochs, select_checkpoint

    options = SelectOptions(epochs=parse_epochs(args.epochs), method=args.method,
                            max_new_tokens=args.max_new_tokens, device=args.device, limit=args.limit)
    result = select_checkpoint(args.run_dir, args.dev, _setup(args), options,
                               out=args.out or Path(args.run_dir) / "select")
    print(json.dumps(result, indent=2))
    return 0
