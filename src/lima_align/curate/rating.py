"""LLM-judge ratings of candidate examples (1-6) for the ``quality``, ``complexity`` and ``deita`` strategies.

Any judge YAML works (``configs/judges/*.yaml``: an OpenAI-compatible endpoint or a local model), through the
same client, cache, retries and resumable judgments file as every other judging run
(:func:`lima_align.evaluate.judging.run_protocol`). The prompts are ours (``evaluate/prompts/quality*.yaml``,
``complexity*.yaml``): ``quality`` sees the request and the response, ``complexity`` the request alone. A
judge in ``generate`` mode writes a reasoned reply parsed like the Likert judge's (an unparseable reply is an
unrated row); in ``weighted`` mode the rating is the expected digit under its first-token probabilities (a
continuous score: fewer ties among the top-k).

Each distinct conversation is rated once (rows are keyed by its content hash), into
``<cache_dir>/ratings/<aspect>-<judge>.jsonl`` (the record of every verdict) with the judge calls cached in
``<cache_dir>/judge.sqlite``, so a re-mix makes no call; one process at a time rates into a file (a lock
beside it), so two arms of a parallel ablation never rate the same pool twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from lima_align.conversation import Example
from lima_align.curate.scoring import RATING_ASPECTS, ScoringConfig, conversation_key
from lima_align.errors import LimaError

CANDIDATE = "candidate"  # the "generator" of a rated candidate in the judgments file


def rating_judge(cfg: ScoringConfig) -> Any:
    """The :class:`~lima_align.evaluate.judge_config.JudgeConfig` of ``cfg.judge`` with its settings."""
    from lima_align.evaluate.judge_config import judge_from

    if not cfg.judge:
        raise LimaError("the quality, complexity and deita strategies need a judge: set scoring.judge to a judge "
                        "YAML (e.g. configs/judges/smollm2-local.yaml, or configs/judges/gpt4.yaml)")
    return judge_from(cfg.judge, cfg.judge_settings, cfg.device, where="mix scoring judge")


def rating_template(judge: Any, aspect: str) -> Any:
    from lima_align.evaluate.judging import protocol_template

    if aspect not in RATING_ASPECTS:
        raise ValueError(f"unknown rating aspect {aspect!r} (known: {', '.join(RATING_ASPECTS)})")
    return protocol_template(judge, "likert", f"{aspect}-weighted" if judge.weighted else aspect)


def rating_provenance(cfg: ScoringConfig, aspect: str) -> dict[str, Any]:
    """Which judge and prompt version rate ``aspect``: part of the mix's stage key and of its report."""
    judge = rating_judge(cfg)
    return {"aspect": aspect, "judge": judge.identity(), "prompt": rating_template(judge, aspect).provenance()}


def _answers(examples: Sequence[Example]) -> tuple[list[Any], list[str]]:
    """One judge answer per distinct conversation (its last assistant turn after the turns before it)."""
    from lima_align.evaluate.answers import Answer

    keys = [conversation_key(ex.conversations) for ex in examples]
    unique: dict[str, Any] = {}
    for key, ex in zip(keys, examples):
        if key not in unique:
            turns = ex.conversations[:-1] if not ex.is_prompt_only else ex.conversations
            unique[key] = Answer(key, 0, tuple(turns), ex.conversations[-1] if not ex.is_prompt_only else "",
                                 CANDIDATE)
    return list(unique.values()), keys


def rate(examples: Sequence[Example], cfg: ScoringConfig, aspect: str, client: Any = None,
         log: Callable[[str], None] = lambda m: None) -> list[float | None]:
    """The 1-6 rating of each example (None: the judge gave none); ``client`` overrides the YAML's (tests)."""
    from lima_align.evaluate.judging import JudgeSetup, read_rows, run_protocol
    from lima_align.evaluate.protocols import single_tasks
    from lima_align.fileio import exclusive, fingerprint

    judge = rating_judge(cfg)
    template = rating_template(judge, aspect)
    answers, keys = _answers(examples)
    cache = Path(cfg.cache_dir)
    out = cache / "ratings" / f"{aspect}-{judge.name}-{fingerprint([judge.identity(), template.provenance()])}.jsonl"
    setup = JudgeSetup(judge, cache / "judge.sqlite", client)
    log(f"{aspect}: rating {len(answers)} candidates with judge {judge.name} ({judge.model}, {judge.mode})")
    with exclusive(out):  # two arms of a parallel ablation rating one pool: the second waits, then calls nothing
        report = run_protocol(setup, "likert", lambda t: single_tasks(answers, t, "likert"), out, template.name)
        rows = read_rows(out)
    if report.written:
        log(f"{aspect}: {report.written} rated in {report.seconds:.1f} s ({report.already_done} already rated)")
    scores: dict[str, float | None] = {}
    for row in rows:
        value = row.get("expected_score")
        value = row.get("verdict") if value is None else value
        scores[row["id"]] = float(value) if isinstance(value, (int, float)) else None
    return [scores.get(k) for k in keys]
