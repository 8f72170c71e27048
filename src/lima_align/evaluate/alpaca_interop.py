"""Pairwise judgment rows as alpaca_eval annotations, and back, so that alpaca_eval's own metrics (its win rate,
its length-controlled win rate, its leaderboard code) can be run on our judgments and compared with ours.

An alpaca_eval annotation is one record per (instruction, output_1, output_2), the shape its annotators write
to ``annotations.json``: ``instruction``, ``output_1`` / ``generator_1`` (the BASELINE), ``output_2`` /
``generator_2`` (the MODEL being evaluated), ``annotator`` and ``preference``:

* 1 = output_1 (the baseline) preferred, 2 = output_2 (the model) preferred, 1.5 = a draw (0 is alpaca_eval's
  older spelling of a draw);
* any value in [1, 2] is read as 1 + P(output_2 preferred): alpaca_eval's weighted annotators write such
  continuous preferences and ``get_winrate`` averages ``preference - 1``;
* null (NaN) = not annotated: alpaca_eval's metrics drop it, as ours drop missing rows.

Its length-controlled win rate measures answer lengths as ``len(output_1) - len(output_2)`` in characters, so
the records carry the full answers. They also carry our prompt ``id`` and ``sample`` (extra keys, which
alpaca_eval keeps and ignores); no key is named ``index``, a name alpaca_eval's GLM reserves for the row position.

Which of our two models is alpaca_eval's model is the ``model`` parameter: ``"a"`` (the default) makes model a
the evaluated model (output_2) and model b the baseline (output_1), as ``lima-align judge pairwise A B`` judges
model A against a baseline B; alpaca_eval's ``win_rate`` is then our win rate of a. ``"b"`` swaps them.

The preference of a row is, in order: its ``soft_preference`` (a weighted judge's P(a better) + P(tie) / 2, the
target our length control also fits) unless ``soft=False``; else its verdict under the tie ``policy``
(:mod:`lima_align.evaluate.tie_conventions`): ``disagreement=tie`` uses the row verdict (a / b / tie), ``average``
counts each order half (1 + win + tie / 2 of the two orders, so 1.25, 1.75 appear). Pure functions, except the
file reader and writer.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from lima_align.errors import DataError
from lima_align.evaluate.summary import rater
from lima_align.evaluate.tie_conventions import DEFAULT_POLICY, POLICIES, row_weights
from lima_align.fileio import iter_json_records, write_json

SIDES = ("a", "b")
_LEGACY_DRAW = 0.0  # alpaca_eval still reads a preference of 0 as a draw


def _check_options(model: str, policy: str) -> None:
    if model not in SIDES:
        raise ValueError(f"model must be 'a' or 'b' (which of our models is alpaca_eval's output_2), got {model!r}")
    if policy not in POLICIES:
        raise ValueError(f"unknown tie policy {policy!r}; use one of {POLICIES}")


def _other(side: str) -> str:
    return "b" if side == "a" else "a"


def preference_of_a(row: Mapping[str, Any], *, policy: str = DEFAULT_POLICY, soft: bool = True) -> float | None:
    """P(model a preferred) of one row: its soft preference (when ``soft``), else win + tie / 2 of its verdict
    under ``policy``; None when the row is missing."""
    if row.get("missing"):
        return None
    if soft and row.get("soft_preference") is not None:
        return min(1.0, max(0.0, float(row["soft_preference"])))
    weights = row_weights(row, policy)
    return None if weights is None else weights[0] + weights[1] / 2


def alpaca_preference(row: Mapping[str, Any], *, model: str = "a", policy: str = DEFAULT_POLICY,
                      soft: bool = True) -> float | None:
    """alpaca_eval's ``preference`` of one row: 1 + P(output_2 preferred), output_2 being our ``model``."""
    _check_options(model, policy)
    p_a = preference_of_a(row, policy=policy, soft=soft)
    if p_a is None:
        return None
    return 1.0 + (p_a if model == "a" else 1.0 - p_a)


def _answers(row: Mapping[str, Any], index: int) -> dict[str, str]:
    answers = row.get("answers") or {}
    if not all(isinstance(answers.get(k), str) for k in SIDES):
        # alpaca_eval measures lengths on the texts; without them its length control cannot be computed
        raise DataError("a pairwise row without both answer texts ('answers': {'a': ..., 'b': ...})",
                        line=index + 1, field="answers")
    return answers


def to_alpaca_annotation(row: Mapping[str, Any], index: int = 0, *, model: str = "a",
                         policy: str = DEFAULT_POLICY, soft: bool = True) -> dict[str, Any]:
    """One pairwise judgment row as one alpaca_eval annotation (``index``: the row's position, for errors)."""
    if row.get("protocol", "pairwise") != "pairwise":
        raise DataError(f"not a pairwise row (protocol {row.get('protocol')!r}); alpaca_eval annotations are "
                        "pairwise", line=index + 1, field="protocol")
    answers, models = _answers(row, index), row.get("models") or {}
    baseline = _other(model)
    return {"instruction": str(row.get("prompt", "")),
            "output_1": answers[baseline], "generator_1": str(models.get(baseline, "")),
            "output_2": answers[model], "generator_2": str(models.get(model, "")),
            "annotator": rater(row),
            "preference": alpaca_preference(row, model=model, policy=policy, soft=soft),
            "id": str(row.get("id", f"#row-{index}")), "sample": int(row.get("sample", 0))}


def to_alpaca_annotations(rows: Iterable[Mapping[str, Any]], *, model: str = "a", policy: str = DEFAULT_POLICY,
                          soft: bool = True) -> list[dict[str, Any]]:
    """Pairwise judgment rows as alpaca_eval annotations (one record per row, in order; see the module
    docstring for ``model``, ``policy`` and ``soft``). alpaca_eval's metrics take one (generator_1,
    generator_2) pair per call: pass one pair's rows, or filter the records by generator."""
    _check_options(model, policy)
    return [to_alpaca_annotation(row, i, model=model, policy=policy, soft=soft) for i, row in enumerate(rows)]


def write_alpaca_annotations(rows: Iterable[Mapping[str, Any]], path: str | Path, *, model: str = "a",
                             policy: str = DEFAULT_POLICY, soft: bool = True) -> int:
    """Write the rows' annotations as a JSON array (alpaca_eval's ``annotations.json`` shape), atomically;
    returns how many were written. Missing preferences are written as null."""
    records = to_alpaca_annotations(rows, model=model, policy=policy, soft=soft)
    write_json(path, records)
    return len(records)


# ------------------------------------------------------------------------------------------------ reading
def _p_output_2(value: Any, path: Path, line: int) -> float | None:
    """P(output_2 preferred) of a record's ``preference``; None when not annotated."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"preference must be a number, got {value!r}", path, line, "preference")
    value = 1.5 if value == _LEGACY_DRAW else float(value)
    if not 1.0 <= value <= 2.0:
        raise DataError(f"preference must be in [1, 2] (or 0, a draw), got {value}", path, line, "preference")
    return value - 1.0


def _verdict_fields(p_a: float | None) -> dict[str, Any]:
    """verdict / soft_preference / missing for P(a preferred): 0, 1/2 and 1 are hard verdicts, anything between
    a soft preference with its nearest verdict."""
    if p_a is None:
        return {"verdict": None, "missing": True}
    hard = {1.0: "a", 0.5: "tie", 0.0: "b"}
    if p_a in hard:
        return {"verdict": hard[p_a], "missing": False}
    return {"verdict": "a" if p_a > 0.5 else "b", "soft_preference": p_a, "missing": False}


def from_alpaca_annotation(record: Mapping[str, Any], *, model: str = "a", path: Path = Path("<input>"),
                           line: int = 0) -> dict[str, Any]:
    """One alpaca_eval annotation as one of our pairwise rows (the inverse of :func:`to_alpaca_annotation`
    for the fields both have; our row's judge calls are not in an annotation)."""
    try:
        outputs = {model: str(record["output_2"]), _other(model): str(record["output_1"])}
        generators = {model: str(record["generator_2"]), _other(model): str(record["generator_1"])}
        q = _p_output_2(record.get("preference"), path, line)
    except KeyError as exc:
        raise DataError(f"not an alpaca_eval pairwise annotation: no {exc.args[0]!r}", path, line) from None
    p_a = None if q is None else (q if model == "a" else 1.0 - q)
    return {"protocol": "pairwise", "id": str(record.get("id", f"#row-{line}")),
            "sample": int(record.get("sample") or 0), "prompt": str(record.get("instruction", "")),
            "models": {k: generators[k] for k in SIDES}, "answers": {k: outputs[k] for k in SIDES},
            "lengths": {k: len(outputs[k]) for k in SIDES}, **_verdict_fields(p_a),
            "judge": {"name": str(record.get("annotator") or "")}}


def read_alpaca_annotations(path: str | Path, *, model: str = "a") -> list[dict[str, Any]]:
    """Our pairwise rows from an alpaca_eval annotations file (JSON array or JSONL), ``model`` naming which of
    our sides its output_2 becomes."""
    _check_options(model, DEFAULT_POLICY)
    p = Path(path)
    return [from_alpaca_annotation(record, model=model, path=p, line=line)
            for line, record in iter_json_records(p)]
