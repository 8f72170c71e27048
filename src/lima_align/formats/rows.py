"""Read and write conversations in the formats people actually have.

A file is a *container* (JSONL, a JSON array, a Hugging Face ``datasets`` folder or a parquet file) holding rows
of one *row format*. Each row format is a pair of functions: ``read(row, where) -> Example`` and
``write(example) -> row``.

| name | row | container written |
|---|---|---|
| gair-lima | ``{"conversations": [str, ...], "source", "id"?, "meta"?}`` | JSONL |
| instruction-response | ``{"instruction", "response"}`` (``context``/``input`` appended to the prompt) | JSONL |
| alpaca | ``{"instruction", "input", "output", "history"?: [[user, assistant], ...], "system"?}`` | JSON array |
| sharegpt | ``{"conversations": [{"from": "human"/"gpt"/"system", "value"}], "id"?}`` | JSONL |
| messages | ``{"messages": [{"role", "content"}]}`` (OpenAI chat) | JSONL |
| alpaca-eval | ``{"instruction", "output", "generator", "dataset"}`` (AlpacaEval model outputs) | JSON array |
| prompts (read only) | ``prompt`` / ``Instruction`` / ``question`` / ``turns`` (MT-bench) / self-instruct rows | - |
| hf-dataset | any row format above, in ``save_to_disk`` folders or ``.parquet`` files | folder / parquet |

A ``system`` message has no place in the LIMA template: it is kept in ``meta["system"]`` and written back by the
formats that can hold it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from lima_align.conversation import (ASSISTANT, USER, Example, OddTurns, ReadReport, Where, apply_odd_turns,
                                     make_example, turns_from_roles)
from lima_align.errors import DataError, LimaError
from lima_align.fileio import atomic_write, iter_json_records, write_jsonl

Row = dict[str, Any]


@dataclass(frozen=True)
class RowFormat:
    name: str
    read: Callable[[Row, Where], Example]
    write: Callable[[Example], Row] | None
    container: str  # default container when writing: "jsonl" or "array"


def _get_str(row: Row, key: str, where: Where, *, required: bool = True) -> str | None:
    value = row.get(key)
    if value is None:
        if required:
            raise where.error("missing", key)
        return None
    if not isinstance(value, str):
        raise where.error(f"expected a string, got {type(value).__name__}", key)
    return value


def _join_prompt(instruction: str, extra: str | None) -> str:
    return f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction


# --- gair-lima -------------------------------------------------------------------------------------------

def read_gair(row: Row, where: Where) -> Example:
    return make_example(row.get("conversations"), where, id=row.get("id"), source=row.get("source"),
                        meta=row.get("meta"))


def write_gair(ex: Example) -> Row:
    return ex.to_dict()


# --- instruction-response --------------------------------------------------------------------------------

def read_instruction_response(row: Row, where: Where) -> Example:
    instruction = _get_str(row, "instruction", where)
    extra = _get_str(row, "context", where, required=False) or _get_str(row, "input", where, required=False)
    response = _get_str(row, "response", where, required=False)
    turns = [_join_prompt(instruction, extra)] + ([] if response is None else [response])
    return make_example(turns, where, id=row.get("id"), source=row.get("source") or row.get("category"),
                        meta=row.get("meta"), turn_fields=["instruction", "response"])


def write_instruction_response(ex: Example) -> Row:
    _single_turn_only(ex, "instruction-response")
    row: Row = {"id": ex.id, "instruction": ex.prompt}
    if ex.response is not None:
        row["response"] = ex.response
    row["source"] = ex.source
    return row


def _single_turn_only(ex: Example, fmt: str) -> None:
    if len(ex.conversations) > 2:
        raise LimaError(f"example {ex.id!r} has {len(ex.conversations)} turns; the {fmt} format holds one "
                        f"prompt and one response (use gair-lima, sharegpt, messages or alpaca)")


# --- alpaca (with the LLaMA-Factory "history" extension for multi-turn) ---------------------------------

def read_alpaca(row: Row, where: Where) -> Example:
    instruction = _get_str(row, "instruction", where)
    extra = _get_str(row, "input", where, required=False)
    output = _get_str(row, "output", where, required=False)
    turns: list[str] = []
    history = row.get("history") or []
    if not isinstance(history, list):
        raise where.error("expected a list of [user, assistant] pairs", "history")
    for i, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise where.error("expected a [user, assistant] pair", f"history[{i}]")
        turns.extend(pair)
    fields = [f"history[{i // 2}][{i % 2}]" for i in range(len(turns))] + ["instruction", "output"]
    turns.append(_join_prompt(instruction, extra))
    if output is not None:
        turns.append(output)
    meta = dict(row.get("meta") or {})
    if row.get("system"):
        meta["system"] = row["system"]
    return make_example(turns, where, id=row.get("id"), source=row.get("source"), meta=meta,
                        turn_fields=fields)


def write_alpaca(ex: Example) -> Row:
    turns = ex.conversations
    last_user = len(turns) - 1 if ex.is_prompt_only else len(turns) - 2
    row: Row = {"instruction": turns[last_user], "input": "",
                "output": turns[last_user + 1] if not ex.is_prompt_only else ""}
    history = [[turns[i], turns[i + 1]] for i in range(0, last_user, 2)]
    if history:
        row["history"] = history
    if ex.meta.get("system"):
        row["system"] = ex.meta["system"]
    row.update({"id": ex.id, "source": ex.source})
    return row


# --- sharegpt and OpenAI messages ------------------------------------------------------------------------

_SHAREGPT_ROLES = {"human": USER, "user": USER, "gpt": ASSISTANT, "assistant": ASSISTANT, "chatgpt": ASSISTANT,
                   "bard": ASSISTANT, "bing": ASSISTANT, "model": ASSISTANT, "system": "system"}


def _read_role_list(items: Any, where: Where, key: str, role_key: str, text_key: str) -> tuple[list[str], str]:
    """Turns from a list of role-tagged messages; a leading system message is returned separately."""
    if not isinstance(items, list) or not items:
        raise where.error("expected a non-empty list of messages", key)
    pairs, system = [], ""
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise where.error(f"expected an object, got {type(item).__name__}", f"{key}[{i}]")
        raw_role = item.get(role_key)
        role = _SHAREGPT_ROLES.get(str(raw_role).lower(), str(raw_role))
        text = item.get(text_key)
        if role == "system" and i == 0:
            system = text if isinstance(text, str) else ""
            continue
        pairs.append((role, text))
    return turns_from_roles(pairs, where, key), system


def _read_tagged(row: Row, where: Where, key: str, role_key: str, text_key: str) -> Example:
    turns, system = _read_role_list(row.get(key), where, key, role_key, text_key)
    meta = dict(row.get("meta") or {})
    if system:
        meta["system"] = system
    return make_example(turns, where, id=row.get("id"), source=row.get("source"), meta=meta)


def read_sharegpt(row: Row, where: Where) -> Example:
    return _read_tagged(row, where, "conversations", "from", "value")


def write_sharegpt(ex: Example) -> Row:
    convs = [{"from": "system", "value": ex.meta["system"]}] if ex.meta.get("system") else []
    convs += [{"from": "human" if m["role"] == USER else "gpt", "value": m["content"]} for m in ex.messages()]
    return {"id": ex.id, "conversations": convs, "source": ex.source}


def read_messages(row: Row, where: Where) -> Example:
    return _read_tagged(row, where, "messages", "role", "content")


def write_messages(ex: Example) -> Row:
    msgs = [{"role": "system", "content": ex.meta["system"]}] if ex.meta.get("system") else []
    return {"id": ex.id, "messages": msgs + ex.messages(), "source": ex.source}


# --- AlpacaEval model outputs ----------------------------------------------------------------------------

def read_alpaca_eval(row: Row, where: Where) -> Example:
    instruction = _get_str(row, "instruction", where)
    output = _get_str(row, "output", where, required=False)
    meta = dict(row.get("meta") or {})
    for key in ("generator", "dataset"):
        if row.get(key) is not None:
            meta[key] = row[key]
    if output is not None and not output.strip():
        # A model can answer with nothing (text-davinci-003 does, once): that is a real output to judge,
        # not a bad record. Keep the prompt and mark the empty answer.
        meta["empty_output"] = True
        output = None
    turns = [instruction] + ([] if output is None else [output])
    return make_example(turns, where, id=row.get("id"), source=row.get("source") or row.get("dataset"),
                        meta=meta, turn_fields=["instruction", "output"])


def write_alpaca_eval(ex: Example) -> Row:
    _single_turn_only(ex, "alpaca-eval")
    return {"dataset": ex.meta.get("dataset", ex.source), "instruction": ex.prompt,
            "output": ex.response or "", "generator": ex.meta.get("generator", "lima-align"), "id": ex.id}


# --- prompt sets (read only): Koala, WizardLM, Vicuna/MT-bench, self-instruct -----------------------------

_PROMPT_KEYS = ("prompt", "Instruction", "question", "text")


def read_prompts(row: Row, where: Where) -> Example:
    meta = {k: v for k, v in row.items() if isinstance(v, (str, int, float)) and k not in _PROMPT_KEYS}
    if "turns" in row:  # MT-bench / Vicuna: later user turns depend on the model's answers
        turns = row["turns"]
        if not isinstance(turns, list) or not turns or not isinstance(turns[0], str):
            raise where.error("expected a non-empty list of strings", "turns")
        prompt, meta["followup_turns"] = turns[0], turns[1:]
    elif "instruction" in row:  # self-instruct: the first instance's input completes the prompt
        instances = row.get("instances") or [{}]
        extra = instances[0].get("input") if isinstance(instances[0], dict) else None
        prompt = _join_prompt(_get_str(row, "instruction", where), extra)
    else:
        key = next((k for k in _PROMPT_KEYS if k in row), None)
        if key is None:
            raise where.error(f"no prompt field (one of {', '.join(_PROMPT_KEYS)}, instruction, turns)")
        prompt = _get_str(row, key, where)
    row_id = row.get("id", row.get("question_id", row.get("idx")))
    return make_example([prompt], where, id=row_id, source=row.get("source") or row.get("category"),
                        meta=meta)


FORMATS: dict[str, RowFormat] = {f.name: f for f in [
    RowFormat("gair-lima", read_gair, write_gair, "jsonl"),
    RowFormat("instruction-response", read_instruction_response, write_instruction_response, "jsonl"),
    RowFormat("alpaca", read_alpaca, write_alpaca, "array"),
    RowFormat("sharegpt", read_sharegpt, write_sharegpt, "jsonl"),
    RowFormat("messages", read_messages, write_messages, "jsonl"),
    RowFormat("alpaca-eval", read_alpaca_eval, write_alpaca_eval, "array"),
    RowFormat("prompts", read_prompts, None, "jsonl"),
]}
HF_DATASET = "hf-dataset"
FORMAT_NAMES = [*FORMATS, HF_DATASET]


def detect_row_format(row: Any, where: Where) -> str:
    """Guess the row format from one record's keys; an error lists the known formats."""
    if not isinstance(row, dict):
        raise where.error(f"expected a JSON object per record, got {type(row).__name__}")
    convs = row.get("conversations")
    if isinstance(convs, list) and convs:
        return "sharegpt" if isinstance(convs[0], dict) else "gair-lima"
    if "messages" in row:
        return "messages"
    if "instruction" in row and "output" in row:
        return "alpaca-eval" if "generator" in row or "dataset" in row else "alpaca"
    if "instruction" in row and "response" in row:
        return "instruction-response"
    if any(k in row for k in (*_PROMPT_KEYS, "turns", "instruction")):
        return "prompts"
    raise where.error(f"cannot tell the format from the fields {sorted(row)[:8]}; known formats: "
                      f"{', '.join(FORMAT_NAMES)} (pass one explicitly)")


def _is_hf_path(path: Path) -> bool:
    return path.is_dir() or path.suffix == ".parquet"


def _iter_raw(path: Path, on_error: Callable[[DataError], None] | None) -> Iterator[tuple[int | None, Any]]:
    if not path.exists():
        raise DataError("no such file or directory", path)
    if _is_hf_path(path):
        from lima_align.formats.hf import iter_hf_rows

        yield from ((None, row) for row in iter_hf_rows(path))
    else:
        yield from iter_json_records(path, on_error)


def iter_examples(path: str | Path, fmt: str | None = None, *, odd_turns: OddTurns = OddTurns.KEEP,
                  report: ReadReport | None = None, skip_bad: bool = False) -> Iterator[Example]:
    """Stream the examples of a file in any known format (guessed from the first record if not given).

    ``odd_turns`` keeps prompt-only examples or drops them with a counted reason; ``skip_bad`` counts bad
    records in ``report`` instead of raising on the first one.
    """
    p = Path(path)
    report = report if report is not None else ReadReport()
    row_format = None if fmt in (None, HF_DATASET) else _row_format(fmt)
    for index, (line, row) in enumerate(_iter_raw(p, report.skip_bad if skip_bad else None)):
        where = Where(str(p), line, index)
        try:
            if row_format is None:
                row_format = FORMATS[detect_row_format(row, where)]
            if not isinstance(row, dict):
                raise where.error(f"expected a JSON object per record, got {type(row).__name__}")
            example = row_format.read(_decode_hf_meta(row), where)
        except DataError as exc:
            if not skip_bad:
                raise
            report.skip_bad(exc)
            continue
        example = apply_odd_turns(example, odd_turns, report)
        if example is not None:
            report.kept += 1
            yield example


def read_examples(path: str | Path, fmt: str | None = None, *, odd_turns: OddTurns = OddTurns.KEEP,
                  report: ReadReport | None = None, skip_bad: bool = False) -> list[Example]:
    """All examples of a file; see :func:`iter_examples`. An empty result is an error, never silent."""
    examples = list(iter_examples(path, fmt, odd_turns=odd_turns, report=report, skip_bad=skip_bad))
    if not examples:
        raise DataError("no examples (empty file, or every record dropped)", path)
    return examples


def _row_format(name: str) -> RowFormat:
    if name not in FORMATS:
        raise LimaError(f"unknown format {name!r}; known formats: {', '.join(FORMAT_NAMES)}")
    return FORMATS[name]


def _decode_hf_meta(row: Row) -> Row:
    # Arrow needs one schema for every row, so our hf-dataset writer stores ``meta`` as a JSON string.
    if isinstance(row.get("meta"), str):
        try:
            return {**row, "meta": json.loads(row["meta"])}
        except json.JSONDecodeError:
            return row
    return row


def write_examples(path: str | Path, examples: Iterable[Example], fmt: str = "gair-lima") -> int:
    """Write examples in a format, atomically; returns how many were written.

    The container follows the format, or the file's suffix (``.json`` array / ``.jsonl``) when it has one;
    ``hf-dataset`` writes a ``save_to_disk`` folder, or a parquet file when ``path`` ends in ``.parquet``.
    """
    p = Path(path)
    if fmt == HF_DATASET:
        from lima_align.formats.hf import write_hf

        return write_hf(p, [write_gair(ex) for ex in examples])
    row_format = _row_format(fmt)
    if row_format.write is None:
        raise LimaError(f"the {fmt} format is read-only; write to one of "
                        f"{', '.join(n for n, f in FORMATS.items() if f.write)}, {HF_DATASET}")
    rows = (row_format.write(ex) for ex in examples)
    container = {".json": "array", ".jsonl": "jsonl"}.get(p.suffix, row_format.container)
    if container == "jsonl":
        return write_jsonl(p, rows)
    return _write_json_array(p, rows)


def _write_json_array(path: Path, rows: Iterable[Row]) -> int:
    n = 0
    with atomic_write(path) as fh:
        fh.write("[")
        for row in rows:
            fh.write(("," if n else "") + "\n  " + json.dumps(row, ensure_ascii=False))
            n += 1
        fh.write("\n]\n")
    return n


def convert(src: str | Path, dst: str | Path, to: str, *, src_format: str | None = None,
            odd_turns: OddTurns = OddTurns.KEEP, skip_bad: bool = False) -> ReadReport:
    """Convert a file between formats; returns what was kept and dropped."""
    report = ReadReport()
    examples = read_examples(src, src_format, odd_turns=odd_turns, report=report, skip_bad=skip_bad)
    write_examples(dst, examples, to)
    return report
