"""Calibrate the built-in local judge (smollm2-135m-instruct) on BIG-bench hhh_alignment in both verdict modes:
accuracy against the human choice with a 95% Wilson interval, position consistency, first-position rate, length
bias and missing verdicts, with the wall time and machine load of each mode. One model, loaded once; no cache,
so every call is made. The baseline is the generate mode: the weighted mode's time is printed as a ratio to it.

    python benchmarks/bench_judge_calibration.py [--hhh ../shared/data/eval/hhh_alignment] [--limit N]

Each mode is what this command runs (``--mode generate`` for the other):

    lima-align judge calibrate --hhh ../shared/data/eval/hhh_alignment --judge configs/judges/smollm2-local.yaml \\
        --mode weighted --no-cache --out calibration-weighted.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from lima_align.evaluate.calibrate import calibration_summary, load_hhh
from lima_align.evaluate.judge_config import load_judge_config
from lima_align.evaluate.judging import JudgeSetup, judge_answer_pairs, read_rows
from lima_align.evaluate.local import LocalJudge

REPO = Path(__file__).resolve().parents[1]
JUDGE = REPO / "configs" / "judges" / "smollm2-local.yaml"


def calibrate(judge: LocalJudge, mode: str, items: list, out: Path, device: str | None) -> dict:
    config = load_judge_config(JUDGE, [f"mode={mode}"] + ([f"device={device}"] if device else []))
    out.unlink(missing_ok=True)  # every call made (a judgments file would be resumed)
    load_before, start = os.getloadavg()[0], time.perf_counter()
    judge_answer_pairs(JudgeSetup(config, None, client=judge), [(a, b) for a, b, _ in items], out)
    seconds = time.perf_counter() - start
    human = {a.id: label for a, _b, label in items}
    summary = calibration_summary([r for r in read_rows(out) if r["id"] in human], human)
    return {"mode": mode, "seconds": round(seconds, 1), "calls": 2 * len(items),
            "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)], **summary}


def line(r: dict) -> str:
    lo, hi = r["accuracy_ci95"]
    return (f"{r['mode']:>8}: accuracy {r['accuracy']:.3f} [95% Wilson {lo:.3f}, {hi:.3f}] on {r['judged']}/"
            f"{r['items']} (missing {r['missing']}, ties {r['ties']}), position consistency "
            f"{r['position_consistency']:.3f}, first-position rate {r['first_position_rate']:.3f}, longer answer "
            f"wins {r['longer_wins_rate']:.3f}; {r['seconds']} s for {r['calls']} calls, load {r['load_avg_1min']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hhh", default=str(REPO.parent / "shared" / "data" / "eval" / "hhh_alignment"))
    parser.add_argument("--limit", type=int, help="the first N items only")
    parser.add_argument("--modes", nargs="+", default=["weighted", "generate"])
    parser.add_argument("--device", help="cpu / cuda (default: cuda when there is one)")
    parser.add_argument("--out", help="folder for the judgments files (default: a temporary one)")
    args = parser.parse_args()
    items = load_hhh(args.hhh)[:args.limit] if args.limit else load_hhh(args.hhh)
    judge = LocalJudge.load(load_judge_config(JUDGE).model, device=args.device)
    print(f"{len(items)} hhh_alignment pairs, judge {judge.model} on {judge.device}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.out or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        results = []
        for mode in args.modes:
            results.append(calibrate(judge, mode, items, folder / f"calibration-{mode}.jsonl", args.device))
            print(json.dumps(results[-1]), flush=True)
    for r in results:
        print(line(r))
    by_mode = {r["mode"]: r for r in results}
    if {"weighted", "generate"} <= set(by_mode):
        ratio = by_mode["generate"]["seconds"] / max(by_mode["weighted"]["seconds"], 1e-9)
        print(f"weighted is {ratio:.1f}x faster than generate (one forward pass per call, no decoding)")


if __name__ == "__main__":
    main()
