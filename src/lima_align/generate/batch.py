"""``lima-align generate``: answers for a file of prompts, N samples each, resumable.

Each output row is a conversation row (``conversations`` = the prompt turns + the answer, so every reader of
the data model reads it) plus what the evaluation needs: ``output``, ``sample``, ``finish_reason``, token
counts, ``generator`` (the model), ``sampling`` and ``seed``. Rows are appended and flushed as they finish; a
re-run skips the (id, sample) pairs already in the file, and drops a torn last line left by a crash.

With ``icl`` (an :class:`~lima_align.generate.icl.ICLPrompt` file) an untuned base model answers in context:
each prompt is laid out after the file's preamble and examples, generation stops where a next turn would begin
(finish reason ``stop``), and the rows are those of a tuned model plus ``meta["icl"]`` (file, name, version,
number of examples, fingerprint).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from lima_align.conversation import Example
from lima_align.errors import DataError, LimaError
from lima_align.fileio import keep_lines, read_appended
from lima_align.formats.rows import read_examples, write_examples
from lima_align.generate.decoding import SamplingConfig
from lima_align.generate.engine import Completion, Request
from lima_align.generate.engines import EngineOptions
from lima_align.generate.icl import ICLPrompt, load_icl


@dataclass
class GenerateReport:
    prompts: int = 0
    requested: int = 0
    already_done: int = 0
    written: int = 0
    errors: int = 0
    torn_lines_dropped: int = 0
    finish_reasons: dict[str, int] = field(default_factory=dict)
    generated_tokens: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def copy_prompts(source: Path, dest: Path, limit: int = 0, *, missing_hint: str = "") -> Path:
    """The prompts of ``source`` (the first ``limit`` when > 0) written to ``dest``, the file a run answers."""
    if not source.is_file():
        raise LimaError(f"test prompts {source} not found" + (f" ({missing_hint})" if missing_hint else ""))
    examples = read_examples(source)
    examples = examples[:limit] if limit > 0 else examples
    if not examples:
        raise LimaError(f"{source}: no test prompts")
    write_examples(dest, examples)
    return dest


def prompt_turns(example: Example) -> list[str]:
    """The turns to answer: a conversation that ends with an answer is asked again for its last user turn."""
    turns = example.conversations
    return list(turns if example.is_prompt_only else turns[:-1])


def done_keys(path: Path, report: GenerateReport, same: dict[str, Any] | None = None) -> set[tuple[str, int]]:
    """(id, sample) pairs already written; a torn last line (killed mid-write) is cut off the file.

    ``same``: what every row already there must share with this run (:func:`run_identity`), else an error
    naming the first line that differs: a resumed file never mixes two settings."""
    if not path.exists():
        return set()
    rows, report.torn_lines_dropped = read_appended(path, lambda r: (str(r["id"]), int(r["sample"])),
                                                    "generation output row")
    for line_no, (_, _, row) in enumerate(rows, start=1):
        found = run_identity(row)
        for name in same or {}:
            if found[name] != same[name]:
                raise DataError(f"written with another {name} ({found[name]!r}; this run: {same[name]!r}): "
                                "resume with the same settings, or write another output file", path, line_no)
    keep_lines(path, [raw for raw, _, _ in rows])
    return {key for _, key, _ in rows}


def run_identity(row: dict[str, Any]) -> dict[str, Any]:
    """The settings an output row was written with that a resume must not change."""
    icl = (row.get("meta") or {}).get("icl")
    return {"generator": row.get("generator"), "sampling": row.get("sampling"),
            "icl": icl.get("fingerprint") if isinstance(icl, dict) else None}


def output_row(example: Example, completion: Completion, generator: str, config: SamplingConfig,
               extra_meta: dict[str, Any] | None = None) -> dict:
    turns = prompt_turns(example)
    meta = {**example.meta, "generator": generator, **(extra_meta or {})}
    if completion.error:
        meta["error"] = completion.error
    answer = completion.text
    return {
        "id": example.id, "sample": completion.sample, "source": example.source,
        "conversations": turns + ([answer] if answer.strip() else []),
        "output": answer, "finish_reason": completion.finish_reason,
        "prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
        "generator": generator, "sampling": config.to_dict(), "seed": completion.seed, "meta": meta,
    }


def icl_request(request: Request, prompt: ICLPrompt) -> Request:
    """``request`` asked in context: its turns laid out after ``prompt``'s examples, stopping at a next turn."""
    return dataclasses.replace(request, prompt=prompt.render(request.turns), stop=prompt.stop_strings)


def generate_file(engine: Any, prompts: str | Path, out: str | Path, config: SamplingConfig, *,
                  samples: int = 1, generator: str = "model", progress: Callable[[int, int], None] | None = None,
                  icl: str | Path | None = None) -> GenerateReport:
    """Generate ``samples`` answers per prompt of ``prompts`` into ``out`` (JSONL), skipping finished rows;
    with ``icl``, answered in context with that :class:`~lima_align.generate.icl.ICLPrompt` file."""
    in_context = load_icl(icl) if icl is not None else None
    extra_meta = {"icl": in_context.meta(icl)} if in_context is not None else None
    report = GenerateReport()
    examples = read_examples(prompts)
    report.prompts = len(examples)
    seen_ids: set[str] = set()
    for ex in examples:
        if ex.id in seen_ids:  # (id, sample) is the resume key
            raise DataError(f"duplicate prompt id {ex.id!r}; ids must be unique to resume safely", prompts)
        seen_ids.add(ex.id)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    same = {"generator": generator, "sampling": config.to_dict(),
            "icl": in_context.fingerprint() if in_context is not None else None}
    done = done_keys(out, report, same)
    requests, owners = [], []
    for ex in examples:
        for s in range(samples):
            report.requested += 1
            if (ex.id, s) in done:
                report.already_done += 1
                continue
            request = Request(ex.id, prompt_turns(ex), s)
            requests.append(icl_request(request, in_context) if in_context is not None else request)
            owners.append(ex)
    start = time.perf_counter()
    with out.open("a", encoding="utf-8") as fh:
        for completion in engine.generate(requests, config):
            if in_context is not None:  # the engine cut at the stop string; the layout's whitespace goes too
                completion = dataclasses.replace(completion, text=in_context.cut_at_stop(completion.text)[0])
            row = output_row(owners[completion.index], completion, generator, config, extra_meta)
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            report.written += 1
            report.errors += completion.finish_reason == "error"
            reasons = report.finish_reasons
            reasons[completion.finish_reason] = reasons.get(completion.finish_reason, 0) + 1
            report.generated_tokens += completion.completion_tokens
            if progress is not None:
                progress(report.written, len(requests))
    report.seconds = round(time.perf_counter() - start, 2)
    return report


@contextlib.contextmanager
def open_engine(model: str, options: EngineOptions, *, add_eot: bool = False, allow_no_eot: bool = False,
                device: str | None = None, batch_size: int = 16) -> Iterator[Any]:
    """The engine ``options`` names for ``model`` (a checkpoint folder or a model name), freed on exit.

    ``allow_no_eot``: a model without the EOT token loads as it is (in-context prompts need none)."""
    eot = {"add_eot": add_eot, "allow_no_eot": allow_no_eot}
    if options.is_vllm and options.data_parallel_size > 1:
        from lima_align.generate.vllm_parallel import DataParallelVLLM

        engine: Any = DataParallelVLLM(model, options, **eot, device=device)
    elif options.is_vllm:
        from lima_align.generate.vllm_engine import VLLMEngine

        engine = VLLMEngine(model, options, **eot, device=device)
    else:
        from lima_align.generate.engine import HFEngine
        from lima_align.generate.loading import load_for_generation

        lm, tokenizer, fmt = load_for_generation(model, **eot, device=device)
        engine = HFEngine(lm, tokenizer, fmt, batch_size=batch_size)
        del lm
    try:
        yield engine
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()
        del engine
        gc.collect()


def answer_prompts(model: str, prompts: str | Path, out: str | Path, config: SamplingConfig, *, samples: int = 1,
                   generator: str = "", batch_size: int = 8, device: str | None = None, add_eot: bool = False,
                   engine: EngineOptions = EngineOptions(), progress: Callable[[int, int], None] | None = None,
                   icl: str | Path | None = None) -> GenerateReport:
    """:func:`generate_file` with ``model`` (a checkpoint folder or a model name) loaded with its saved chat
    format by the ``engine`` on ``device``, and freed afterwards (the next stage of a job may load another model).

    With ``icl`` the model answers in context and needs no EOT token: an untuned base model loads as it is."""
    if icl is not None:
        load_icl(icl)  # a bad file fails before the model loads
    with open_engine(model, engine, add_eot=add_eot, allow_no_eot=icl is not None, device=device,
                     batch_size=batch_size) as lm:
        return generate_file(lm, prompts, out, config, samples=samples, generator=generator or Path(out).stem,
                             progress=progress, icl=icl)
