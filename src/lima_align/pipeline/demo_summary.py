"""The demo's numbers under stable keys (``demo-summary.json``) and its one-page report.

Three measurements of before vs after tuning on the held-out prompts: ``style`` (the judge-free alignment metrics
of each answers file: ``style.before.eot_stop_rate`` / ``style.after.eot_stop_rate`` are fractions in [0, 1]),
``reference_loss`` (the per-token loss of held-out reference answers, and its paired change) and ``judge`` (the
weighted built-in judge's probability that the tuned model's answer is preferred, with its interval).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lima_align.fileio import write_json

JUDGE_CAVEAT = ("A 135M judge: on the HHH alignment pairs it is barely better than chance (see the README's "
                "calibration), so read this as a plumbing check of the protocol, not as evidence of quality.")


def _finite(x: Any) -> Any:
    """JSON-safe: NaN becomes None (strict JSON readers refuse NaN)."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def style(answers: Path) -> dict[str, Any]:
    """The judge-free metrics of one answers file, with the headline stop rate as a bare fraction."""
    from lima_align.evaluate.format_metrics import metrics_for_files

    (metrics,) = metrics_for_files([answers])
    stop = metrics["eot_rate"]  # EOT itself: a base model's answers that end at its pretrained EOS do not count
    return {"eot_stop_rate": stop["rate"] if stop else None, **metrics}


def reference_change(before: Path, after: Path) -> dict[str, Any]:
    """Both reference-loss summaries and the paired change after - before (negative: the references got likelier)."""
    from lima_align.evaluate.intervals import mean_difference

    b, a = (json.loads(p.read_text(encoding="utf-8")) for p in (before, after))
    per = {side: {k: v["loss"] for k, v in d["references"].items() if v["tokens"]} for side, d in (("b", b), ("a", a))}
    return {"before": b["summary"], "after": a["summary"], "difference": mean_difference(per["a"], per["b"])}


def judge_preference(judgments: Path, judge_model: str) -> dict[str, Any]:
    """Mean P(after preferred) over the held-out prompts with a t interval over prompts, and per-prompt values."""
    from lima_align.evaluate.intervals import t_interval

    rows = [json.loads(line) for line in judgments.read_text(encoding="utf-8").splitlines() if line.strip()]
    prefs = {r["id"]: r.get("soft_preference") for r in rows}
    values = [v for v in prefs.values() if v is not None]
    lo, hi = t_interval(values) if len(values) > 1 else (math.nan, math.nan)
    rate = sum(values) / len(values) if values else None
    return {"model": judge_model, "after_preferred": {"rate": rate, "ci": [float(lo), float(hi)],
                                                      "n_prompts": len(values)},
            "missing": len(prefs) - len(values), "per_prompt": prefs, "caveat": JUDGE_CAVEAT}


def trained_examples(train_file: Path, max_chars: int | None) -> list[Any]:
    """The examples training kept from the mix file (the trainer's own reader and length rule)."""
    from lima_align.train.data import load_examples

    return load_examples(str(train_file), max_chars=max_chars)[0]


def training_mix(examples: list[Any], tokenizer_name: str) -> list[dict[str, Any]]:
    """Table 1 of the trained examples (examples and average input / output tokens per source)."""
    from lima_align.curate.table1 import TokenizerCounter, table1
    from lima_align.models import load_tokenizer

    stats = table1(examples, TokenizerCounter(load_tokenizer(tokenizer_name), tokenizer_name))
    return [{"source": name, "examples": t["examples"], "input_tokens": t["avg_input_tokens"],
             "output_tokens": t["avg_output_tokens"]} for name, t in stats.to_dict()["sources"].items()]


def prompt_rows(before: Path, after: Path, prefs: dict[str, float | None]) -> list[dict[str, Any]]:
    """Each held-out prompt with both answers, how each ended, and the judge's preference for the after answer."""
    def load(path: Path) -> dict[str, dict[str, Any]]:
        rows = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        return {r["id"]: r for r in rows if r.get("sample", 0) == 0}

    b, a = load(before), load(after)
    ended = {"eot": "stopped at EOT", "eos": "stopped at its EOS", "length": "hit the token cap"}
    return [{"id": pid, "prompt": row["conversations"][0], "before": row["output"], "after": a[pid]["output"],
             "before_finish": ended.get(row.get("finish_reason"), row.get("finish_reason")),
             "after_finish": ended.get(a[pid].get("finish_reason"), a[pid].get("finish_reason")),
             "after_preferred": prefs.get(pid)} for pid, row in b.items() if pid in a]


def write_summary(data: dict[str, Any], out: Path) -> dict[str, Any]:
    """``demo-summary.json``, the before/after figure and ``report/index.html``; returns the paths."""
    from lima_align.report.demo_page import render_demo_page
    from lima_align.report.figures import paired_rates

    data = _finite(data)
    write_json(out / "demo-summary.json", data)
    b, a = data["style"]["before"], data["style"]["after"]
    metrics = [(name, b.get(key), a.get(key)) for name, key in
               (("stops at EOT", "eot_rate"), ("continues prompt", "continuation_rate"), ("lists", "list_rate"),
                ("repeats", "repetition_rate"))]
    (out / "report").mkdir(parents=True, exist_ok=True)
    png, _svg = paired_rates(metrics, ("before", "after"), out / "report" / "before-after", "Held-out answers")
    page = out / "report" / "index.html"
    page.write_text(render_demo_page(data, png), encoding="utf-8")
    return {"summary": str(out / "demo-summary.json"), "report": str(page), "figure": str(png)}
