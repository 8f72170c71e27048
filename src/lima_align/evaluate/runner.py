"""Run judge tasks concurrently into a judgments JSONL file, resumably.

A :class:`Task` is one row of the output (e.g. one pair judged in both orders): its calls, the row fields known
in advance, and how the parsed calls combine into the verdict. Rows are appended as tasks finish. A re-run
skips the keys already in the file (a torn last line from a killed run is cut off) and, through the cache, makes
no call twice: killing a run mid-way and re-running loses and duplicates nothing.

A weighted run (``params.top_logprobs`` > 0) parses no text: each call's record gets ``probs``, the distribution
over the template's choices read from the first-token logprobs, its argmax as ``label``, and the ``logprobs``
themselves; the task's combine function reads them (protocols.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from lima_align.errors import DataError
from lima_align.evaluate.clients import CachedJudge, CallParams, Reply
from lima_align.evaluate.parsers import argmax_label, choice_probs
from lima_align.evaluate.templates import Template
from lima_align.fileio import keep_lines, read_appended

Parser = Callable[[str | None], Any]


@dataclass
class Call:
    tag: str  # "ab" / "ba" (order), "turn-1", ...
    prompt: str  # the rendered judge prompt (one user message)
    sample: int = 0


@dataclass
class Task:
    key: str
    calls: list[Call]
    base: dict[str, Any]
    combine: Callable[[list[dict[str, Any]]], dict[str, Any]]


@dataclass
class JudgeRun:
    """What a judging run needs besides the tasks."""

    judge: CachedJudge
    template: Template
    parse: Parser
    params: CallParams
    info: dict[str, Any] = field(default_factory=dict)  # the judge's provenance, written in every row
    label_of: Callable[[str], Any] = str  # weighted mode: a choice label as the protocol's label (likert: int)

    @property
    def weighted(self) -> bool:
        return self.params.top_logprobs > 0

    @property
    def mode(self) -> str:
        return "weighted" if self.weighted else "generate"


@dataclass
class RunReport:
    tasks: int = 0
    already_done: int = 0
    written: int = 0
    missing: int = 0
    torn_lines_dropped: int = 0
    failed_rows_retried: int = 0
    seconds: float = 0.0
    usage: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def done_keys(path: Path, report: RunReport) -> set[str]:
    """Keys of the rows already written. A torn last line (a run killed mid-write) is cut off; rows where a
    call FAILED (no reply after the retries, as opposed to an unparseable reply) are dropped, so that a re-run
    judges them again instead of keeping them missing forever (the file is rewritten atomically)."""
    if not path.exists():
        return set()
    rows, report.torn_lines_dropped = read_appended(path, lambda r: str(r["key"]), "judgments row")
    kept = [(raw, key) for raw, key, row in rows if not any(c.get("error") for c in row.get("calls", ()))]
    report.failed_rows_retried += len(rows) - len(kept)
    keep_lines(path, [raw for raw, _ in kept])
    return {key for _, key in kept}


async def _judge_call(run: JudgeRun, call: Call) -> dict[str, Any]:
    started = now()
    params = replace(run.params, sample=call.sample)
    reply = await run.judge.complete([{"role": "user", "content": call.prompt}], params, run.template.version)
    verdict = _weighted_label(run, reply) if run.weighted else {"label": _parsed(run, reply)}
    return {"tag": call.tag, **verdict, "missing": verdict["label"] is None, "raw": reply.text,
            "error": reply.error, "cached": reply.cached, "attempts": reply.attempts, "seed": reply.seed,
            "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            "cost_usd": round(reply.cost_usd, 8), "cache_key": reply.key, "started_at": started,
            "finished_at": now()}


def _parsed(run: JudgeRun, reply: Reply) -> Any:
    return run.parse(reply.text) if reply.error is None else None


def _weighted_label(run: JudgeRun, reply: Reply) -> dict[str, Any]:
    """The call's distribution over the template's choices, its argmax label, and the logprobs read."""
    probs = choice_probs(reply.logprobs, run.template.choice_map) if reply.error is None else None
    best = argmax_label(probs)
    return {"label": None if best is None else run.label_of(best), "probs": probs, "logprobs": reply.logprobs}


async def _judge_task(run: JudgeRun, task: Task) -> dict[str, Any]:
    calls = await asyncio.gather(*(_judge_call(run, c) for c in task.calls))
    row = {"key": task.key, **task.base, "mode": run.mode, **task.combine(list(calls)), "calls": list(calls),
           "judge": run.info, "template": run.template.provenance(), "judged_at": now()}
    return row


async def run_tasks(tasks: list[Task], run: JudgeRun, out: str | Path, *, max_in_flight: int = 256,
                    progress: Callable[[int, int], None] | None = None) -> RunReport:
    """Judge every task not yet in ``out``; returns counts and the judge usage of this run."""
    report = RunReport(tasks=len(tasks))
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise DataError("duplicate judgment keys (the same item twice in the input)", out)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = done_keys(out, report)
    pending = [t for t in tasks if t.key not in done]
    report.already_done = len(tasks) - len(pending)
    start = time.perf_counter()
    gate = asyncio.Semaphore(max_in_flight)

    async def one(task: Task) -> dict[str, Any]:
        async with gate:
            return await _judge_task(run, task)

    with out.open("a", encoding="utf-8") as fh:
        last_sync = time.monotonic()
        for next_row in asyncio.as_completed([one(t) for t in pending]):
            row = await next_row
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()  # a killed process keeps every flushed row; fsync below bounds a machine crash
            if time.monotonic() - last_sync > 1.0:
                os.fsync(fh.fileno())
                last_sync = time.monotonic()
            report.written += 1
            report.missing += bool(row.get("missing"))
            if progress is not None:
                progress(report.written, len(pending))
        os.fsync(fh.fileno())
    report.seconds = round(time.perf_counter() - start, 3)
    report.usage = run.judge.usage.to_dict()
    return report
