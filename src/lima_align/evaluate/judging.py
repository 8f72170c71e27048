"""The judging entry points the CLI calls: build the judge a config describes, run a protocol's tasks into a
judgments file, close everything. One function per protocol; all share :func:`run_protocol`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lima_align.errors import LimaError
from lima_align.evaluate.answers import Answer, pair_answers, read_answers
from lima_align.evaluate.cache import JudgeCache, NoCache
from lima_align.evaluate.clients import CachedJudge, ChatJudge
from lima_align.evaluate.judge_config import JudgeConfig, build_client
from lima_align.evaluate.parsers import PARSERS
from lima_align.evaluate.protocols import multiturn_tasks, pairwise_tasks, single_tasks
from lima_align.evaluate.runner import JudgeRun, RunReport, Task, run_tasks
from lima_align.evaluate.templates import Template, load_template

DEFAULT_CACHE = Path(".lima-judge-cache.sqlite")


@dataclass
class JudgeSetup:
    """Which judge, where its cache lives, and (optionally) a client already built (tests, a loaded model)."""

    config: JudgeConfig
    cache_path: Path | None = DEFAULT_CACHE  # None: no cache
    client: ChatJudge | None = None
    progress: Callable[[int, int], None] | None = None


def protocol_template(config: JudgeConfig, protocol: str, template: str | Path | None = None) -> Template:
    """The prompt of ``protocol`` in the judge's mode (``<protocol>-weighted`` for weighted) or ``template``;
    a weighted judge needs one that lists its verdict tokens (``choices``)."""
    tmpl = load_template(template or (f"{protocol}-weighted" if config.weighted else protocol))
    if config.weighted and not tmpl.choices:
        raise LimaError(f"judge {config.name!r} is in weighted mode but the prompt {tmpl.name!r} has no 'choices' "
                        f"(the verdict tokens); give a prompt that has them, or set mode=generate")
    if not config.weighted and tmpl.choices:
        raise LimaError(f"the prompt {tmpl.name!r} asks for a verdict token alone (it has 'choices'): it is for "
                        f"the weighted mode; set mode=weighted or give a generate-mode prompt")
    return tmpl


def run_protocol(setup: JudgeSetup, protocol: str, build: Callable[[Template], list[Task]], out: str | Path,
                 template: str | Path | None = None) -> RunReport:
    """Load the template, build the tasks, judge them into ``out``."""
    tmpl = protocol_template(setup.config, protocol, template)
    return asyncio.run(_run(setup, protocol, build(tmpl), tmpl, Path(out)))


async def _run(setup: JudgeSetup, protocol: str, tasks: list[Task], tmpl: Template, out: Path) -> RunReport:
    client = setup.client or build_client(setup.config)
    cache = JudgeCache(setup.cache_path) if setup.cache_path else NoCache()
    judge = CachedJudge(client, cache, setup.config.pricing())
    params = setup.config.params(candidates=tuple(tmpl.choice_map.values()))
    run = JudgeRun(judge, tmpl, PARSERS[protocol], params, setup.config.provenance(),
                   label_of=int if protocol == "likert" else str)
    try:
        return await run_tasks(tasks, run, out, progress=setup.progress)
    finally:
        cache.close()
        if setup.client is None and hasattr(client, "aclose"):
            await client.aclose()


def judge_pairwise(setup: JudgeSetup, a: str | Path, b: str | Path, out: str | Path, *, sample: int = 0,
                   limit: int | None = None, template: str | Path | None = None) -> tuple[RunReport, dict]:
    """Judge model a's answers against model b's (e.g. a baseline like DaVinci003) in both orders."""
    pairing = pair_answers(read_answers(a, sample=sample), read_answers(b))
    pairs = pairing.pairs[:limit] if limit else pairing.pairs
    report = run_protocol(setup, "pairwise", lambda t: pairwise_tasks(pairs, t), out, template)
    return report, {"paired": len(pairs), "by": pairing.by, "unmatched_a": pairing.unmatched_a,
                    "unmatched_b": pairing.unmatched_b}


def judge_single(setup: JudgeSetup, protocol: str, answers_path: str | Path, out: str | Path, *,
                 limit: int | None = None, judge_samples: int = 1,
                 template: str | Path | None = None) -> RunReport:
    """absolute / safety / likert over every answer (every sample) of a file."""
    if protocol not in ("absolute", "safety", "likert"):
        raise LimaError(f"unknown single-answer protocol {protocol!r}")
    answers = read_answers(answers_path)[:limit] if limit else read_answers(answers_path)
    return run_protocol(setup, protocol, lambda t: single_tasks(answers, t, protocol, judge_samples), out,
                        template)


def judge_multiturn(setup: JudgeSetup, conversations_path: str | Path, out: str | Path, *,
                    limit: int | None = None, template: str | Path | None = None) -> RunReport:
    """Rate every assistant turn of each conversation (a file of full conversations)."""
    from lima_align.formats.rows import read_examples

    convs = []
    for ex in read_examples(conversations_path):
        if ex.is_prompt_only:
            continue  # nothing answered yet
        convs.append((ex.id, list(ex.conversations), str(ex.meta.get("generator") or Path(conversations_path).stem)))
    if not convs:
        raise LimaError(f"{conversations_path}: no conversation ends with an assistant turn")
    convs = convs[:limit] if limit else convs
    return run_protocol(setup, "multiturn", lambda t: multiturn_tasks(convs, t), out, template)


def judge_answer_pairs(setup: JudgeSetup, pairs: list[tuple[Answer, Answer]], out: str | Path,
                       template: str | Path | None = None) -> RunReport:
    """Pairwise judging of pairs built in code (calibration, checkpoint round-robin)."""
    return run_protocol(setup, "pairwise", lambda t: pairwise_tasks(pairs, t), out, template)


def judge_answers(setup: JudgeSetup, protocol: str, answers: list[Answer], out: str | Path) -> RunReport:
    return run_protocol(setup, protocol, lambda t: single_tasks(answers, t, protocol), out)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a judgments file."""
    from lima_align.fileio import iter_jsonl

    return [row for _line, row in iter_jsonl(path)]
