"""Super-NaturalInstructions -> LIMA examples: one instance from each of 50 natural-language generation tasks.

Task files come in two schemas, both read here:

- final (allenai/natural-instructions ``tasks/*.json``): ``Definition`` is a list of strings, ``Instances`` are
  ``{"id", "input", "output": [...]}``, plus ``Categories``, ``Input_language``, ``Instance License``, ``URL``...;
- early 2021: ``Definition`` is one string and instances have no ``id`` (the instance is named by its index).

Rules (the paper: "50 natural language generation tasks such as summarization, paraphrasing, and style
transfer", one random example each):

- a task is kept when one of its ``Categories`` is in the shipped list
  ``lima_align/data/sni_generation_categories.txt`` (a user list can replace it); classification-style tasks
  are rejected with reason ``not_generation_category``;
- tasks whose declared input or output language is not English are rejected (``not_english``);
- one instance is drawn per task at random (seeded by the seed and the task name, so adding a task file never
  changes another task's draw) among instances with a non-empty input and output;
- when more tasks qualify than requested, a seeded sample of them is kept; the others are ``not_sampled``;
- prompt = the definition, a blank line, then the instance input: one request as a user would write it;
  response = the instance's first reference output.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

from lima_align.conversation import Example, ReadReport, provenance
from lima_align.errors import DataError
from lima_align.fileio import read_text
from lima_align.sources.base import Curated, Progress, audit, settings

SOURCE = "natural_instructions"
DEFAULT_TASKS = 50
DEFAULT_LICENSE = "Apache-2.0 (Super-NaturalInstructions task definitions; instance licence not stated)"

REASONS = {
    "not_generation_category": "no task category is a natural-language generation category",
    "not_english": "task input or output language is not English",
    "no_usable_instance": "no instance has both a non-empty input and a non-empty output",
    "not_sampled": "an eligible task left out because more tasks qualified than requested",
}


@dataclass
class NaturalInstructionsConfig:
    """The options of ``curate natural-instructions`` (field = option name); defaults are the paper's."""

    tasks: int = DEFAULT_TASKS  # number of tasks (one example each)
    categories: str | None = None  # file of generation category names (default: the shipped list)
    seed: int = 0
    strict: bool = False  # an unreadable task file raises instead of being a counted skip


@dataclass
class Task:
    """The parts of a task file that curation uses."""

    name: str
    path: Path
    definition: str
    categories: list[str]
    instances: list[dict[str, Any]]
    languages: list[str]
    license: str | None
    url: str | None
    schema: str  # "final" or "2021"


def load_generation_categories(path: str | Path | None = None) -> frozenset[str]:
    """Category names counted as generation (lower-cased): the shipped list, or a user file in the same format."""
    if path is None:
        text = resources.files("lima_align").joinpath("data/sni_generation_categories.txt").read_text("utf-8")
    else:
        text = read_text(path)
    names = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return frozenset(name.lower() for name in names if name)


def task_paths(inputs: Iterable[str | Path]) -> list[Path]:
    """Task files named directly, or every ``*.json`` in a named directory (sorted)."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(c for c in p.iterdir() if c.suffix.lower() == ".json" and c.is_file())
            if not found:
                raise DataError("directory holds no .json task files", p)
            paths.extend(found)
        elif p.exists():
            paths.append(p)
        else:
            raise DataError("no such file or directory", p)
    return paths


def read_task(path: str | Path) -> Task:
    """Parse one task file (either schema); a DataError names the file, line or missing field."""
    p = Path(path)
    text = read_text(p)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"malformed JSON: {exc.msg} (column {exc.colno})", p, exc.lineno) from None
    if not isinstance(data, dict):
        raise DataError("expected a task object ({...})", p, 1)
    for key in ("Definition", "Instances"):
        if key not in data:
            raise DataError("missing key in task file", p, None, key)
    definition = data["Definition"]
    schema = "final" if isinstance(definition, list) else "2021"
    if isinstance(definition, list):
        definition = " ".join(str(part).strip() for part in definition)
    if not isinstance(definition, str) or not definition.strip():
        raise DataError("expected a non-empty string or list of strings", p, None, "Definition")
    instances = data["Instances"]
    if not isinstance(instances, list):
        raise DataError("expected a list of instances", p, None, "Instances")
    languages = [*_as_list(data.get("Input_language")), *_as_list(data.get("Output_language"))]
    return Task(name=p.stem, path=p, definition=definition.strip(), categories=_as_list(data.get("Categories")),
                instances=instances, languages=languages, license=_joined(data.get("Instance License")),
                url=_joined(data.get("URL")), schema=schema)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _joined(value: Any) -> str | None:
    return "; ".join(_as_list(value)) or None


def task_reason(task: Task, generation: frozenset[str]) -> str | None:
    """Why a task is not an English generation task, or None."""
    if not any(c.strip().lower() in generation for c in task.categories):
        return "not_generation_category"
    if any(lang.strip().lower() != "english" for lang in task.languages):
        return "not_english"
    return None


def draw_instance(task: Task, seed: int) -> tuple[int, str, str] | None:
    """``(index, input, output)`` of one usable instance, drawn with a per-task seed; None when none is usable."""
    usable = [i for i, inst in enumerate(task.instances) if _usable(inst) is not None]
    if not usable:
        return None
    index = random.Random(f"{seed}/{task.name}").choice(usable)
    text_in, text_out = _usable(task.instances[index])  # type: ignore[misc]
    return index, text_in, text_out


def _usable(instance: Any) -> tuple[str, str] | None:
    if not isinstance(instance, dict):
        return None
    text_in = instance.get("input")
    outputs = instance.get("output")
    if isinstance(outputs, str):
        outputs = [outputs]
    if not isinstance(text_in, str) or not text_in.strip() or not isinstance(outputs, list):
        return None
    first = next((o for o in outputs if isinstance(o, str) and o.strip()), None)
    return None if first is None else (text_in.strip(), first.strip())


def render_prompt(definition: str, text_in: str) -> str:
    """The task definition and the instance input as one user request."""
    return f"{definition.strip()}\n\n{text_in.strip()}"


def build_example(task: Task, drawn: tuple[int, str, str], seed: int) -> Example:
    """The LIMA example for a task's drawn instance, with provenance."""
    index, text_in, text_out = drawn
    inst_id = task.instances[index].get("id") or f"{task.name}-{index}"
    meta = provenance(task.name, task.license or DEFAULT_LICENSE, url=task.url, source_id=inst_id,
                      file=task.path.name, schema=task.schema, categories=task.categories,
                      instance_index=index, seed=seed)
    return Example(id=f"sni-{inst_id}", conversations=[render_prompt(task.definition, text_in), text_out],
                   source=SOURCE, meta=meta)


def curate(inputs: Iterable[str | Path], *, n_tasks: int = DEFAULT_TASKS, seed: int = 0,
           categories: frozenset[str] | None = None, skip_bad: bool = True) -> tuple[list[Example], ReadReport]:
    """Examples from the task files in ``inputs`` (files or directories) and the audit of every task considered.

    A task file that cannot be read is a counted skip (``skip_bad``) or raises its DataError.
    """
    generation = categories if categories is not None else load_generation_categories()
    report = ReadReport()
    eligible: list[Example] = []  # built at once so that no task's instances stay in memory
    for path in task_paths(inputs):
        try:
            task = read_task(path)
        except DataError as exc:
            if not skip_bad:
                raise
            report.skip_bad(exc)
            continue
        reason = task_reason(task, generation)
        drawn = None if reason else draw_instance(task, seed)
        if reason is None and drawn is None:
            reason = "no_usable_instance"
        if reason:
            report.drop(reason)
        else:
            eligible.append(build_example(task, drawn, seed))  # type: ignore[arg-type]
    chosen = eligible
    if len(eligible) > n_tasks:
        chosen = sorted(random.Random(seed).sample(eligible, n_tasks), key=lambda ex: ex.meta["origin"])
        report.dropped["not_sampled"] += len(eligible) - n_tasks
    report.kept = len(chosen)
    return chosen, report


class NaturalInstructionsSource:
    """``curate natural-instructions``: the :class:`~lima_align.sources.base.Source` of task files."""

    name = "natural-instructions"
    config_type = NaturalInstructionsConfig
    negated: dict[str, str] = {}

    def curate(self, paths: Sequence[str | Path], config: NaturalInstructionsConfig,
               progress: Progress | None = None) -> Curated:
        cats = load_generation_categories(config.categories) if config.categories else None
        examples, read = curate(paths, n_tasks=config.tasks, seed=config.seed, categories=cats,
                                skip_bad=not config.strict)
        return Curated(examples, audit(self.name, read, settings(paths, config), {"unit": "task", "reasons": REASONS}))
