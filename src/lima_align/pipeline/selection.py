"""Checkpoint selection by a judge, never by validation loss (the paper: perplexity does not track quality).

For every complete checkpoint whose epoch is in the window (5-10 in the paper), answer the dev prompts with the
evaluation's own decoding (the paper's sampling and token cap unless told otherwise; greedy only when asked: the
selection must judge the kind of answers that are evaluated), resumably, then judge: ``likert`` picks the best mean helpfulness score; ``pairwise`` plays a
round-robin (every pair of checkpoints, both orders) and picks the most points (win 1, tie 0.5). Ties between
checkpoints go to the EARLIER epoch (less training, same judged quality).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lima_align.errors import LimaError
from lima_align.evaluate.answers import pair_answers, read_answers
from lima_align.evaluate.judging import JudgeSetup, judge_answer_pairs, judge_answers, read_rows
from lima_align.evaluate.statistics import likert_summary, win_tie_loss
from lima_align.fileio import write_json
from lima_align.generate.batch import answer_prompts
from lima_align.generate.engines import EngineOptions
from lima_align.generate.decoding import SamplingConfig
from lima_align.train.checkpoint import MARKER, complete_checkpoints


@dataclass
class SelectSpec:
    """Checkpoint selection on the dev prompts as a run configures it (the paper: epochs 5-10, by a judge, never
    by loss). Dev answers are decoded like the test answers (the run's ``sampling``) unless ``greedy`` is set."""

    enabled: bool = True  # false: use the last checkpoint
    dev: str = ""  # dev prompts ("" = the mix's dev split)
    epochs: str = "5-10"
    method: str = "likert"  # likert | pairwise
    greedy: bool = False  # decode the dev answers greedily instead of with the evaluation's sampling
    max_new_tokens: int | None = None  # None: the evaluation's token cap
    limit: int = 0  # > 0: judge only the first N dev prompts

    def __post_init__(self) -> None:
        if self.method not in ("likert", "pairwise"):
            raise ValueError(f"select.method must be likert or pairwise, got {self.method!r}")

    def options(self, sampling: SamplingConfig, device: str | None = None,
                engine: EngineOptions = EngineOptions()) -> "SelectOptions":
        """The resolved options, decoding with ``sampling`` (the evaluation's) as changed by this spec, with the
        run's ``engine``."""
        return SelectOptions(epochs=parse_epochs(self.epochs), method=self.method, device=device,
                             sampling=dev_decoding(sampling, self.greedy, self.max_new_tokens),
                             limit=self.limit or None, engine=engine)


def dev_decoding(sampling: SamplingConfig, greedy: bool = False, max_new_tokens: int | None = None) -> SamplingConfig:
    """The evaluation's decoding, made greedy and/or given another token cap when asked."""
    changes: dict[str, Any] = {}
    if greedy:
        changes["temperature"] = 0.0
    if max_new_tokens is not None:
        changes["max_new_tokens"] = max_new_tokens
    return dataclasses.replace(sampling, **changes)


@dataclass
class SelectOptions:
    """Resolved selection settings (what ``lima-align select`` and :class:`SelectSpec` both give)."""

    epochs: tuple[int, int] = (5, 10)
    method: str = "likert"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # the paper's decoding by default
    device: str | None = None
    limit: int | None = None
    engine: EngineOptions = field(default_factory=EngineOptions)


def parse_epochs(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    try:
        window = (int(lo), int(hi or lo))
    except ValueError:
        raise LimaError(f"--epochs: expected FIRST-LAST, e.g. 5-10, got {text!r}") from None
    if window[0] > window[1]:
        raise LimaError(f"--epochs: empty window {text!r}")
    return window


def checkpoints_in_window(run_dir: str | Path, window: tuple[int, int]) -> list[tuple[int, Path]]:
    """(epoch, folder) of the complete checkpoints whose (rounded) epoch is in the window."""
    found = []
    for folder in complete_checkpoints(run_dir):
        epoch = json.loads((folder / MARKER).read_text()).get("epoch")
        if epoch is not None and window[0] <= round(epoch) <= window[1]:
            found.append((round(epoch), folder))
    if not found:
        raise LimaError(f"{run_dir}: no complete checkpoint for epochs {window[0]}-{window[1]}")
    return found


def generate_dev_answers(folder: Path, dev: str | Path, out: Path, name: str, options: SelectOptions) -> Path:
    answer_prompts(str(folder), dev, out, options.sampling, generator=name, batch_size=16, device=options.device,
                   engine=options.engine)
    return out


def best_checkpoint(order: list[str], scores: dict[str, dict[str, Any]]) -> str:
    """The highest score wins; a tie goes to the EARLIER checkpoint of ``order`` (less training, same quality)."""
    return max(order, key=lambda name: (scores[name]["score"], -order.index(name)))


def select_checkpoint(run_dir: str | Path, dev: str | Path, setup: JudgeSetup, options: SelectOptions,
                      out: str | Path) -> dict[str, Any]:
    out = Path(out)
    candidates = checkpoints_in_window(run_dir, options.epochs)
    outputs = {}
    for epoch, folder in candidates:
        name = f"epoch-{epoch}"
        outputs[name] = generate_dev_answers(folder, dev, out / f"{name}.outputs.jsonl", name, options)
    if options.method == "likert":
        scores = _likert_scores(outputs, setup, out, options.limit)
    else:
        scores = _round_robin(outputs, setup, out, options.limit)
    order = [f"epoch-{e}" for e, _ in candidates]
    best = best_checkpoint(order, scores)
    result = {"best": best, "checkpoint": str(dict(zip(order, (str(f) for _, f in candidates)))[best]),
              "method": options.method, "epochs": list(options.epochs), "scores": scores,
              "sampling": dataclasses.asdict(options.sampling), "judge": setup.config.provenance()}
    write_json(out / "select.json", result)
    return result


def _likert_scores(outputs: dict[str, Path], setup: JudgeSetup, out: Path, limit: int | None) -> dict:
    scores = {}
    for name, path in outputs.items():
        answers = read_answers(path)[:limit] if limit else read_answers(path)
        judgments = out / f"{name}.likert.jsonl"
        judge_answers(setup, "likert", answers, judgments)
        rows = read_rows(judgments)
        summary = likert_summary([r["verdict"] for r in rows], [r["id"] for r in rows])
        scores[name] = {"score": summary["mean"] if summary["n"] else float("-inf"), "likert": summary}
    return scores


def _round_robin(outputs: dict[str, Path], setup: JudgeSetup, out: Path, limit: int | None) -> dict:
    points = {name: 0.0 for name in outputs}
    games: dict[str, Any] = {}
    for x, y in itertools.combinations(outputs, 2):
        pairs = pair_answers(read_answers(outputs[x]), read_answers(outputs[y])).pairs
        pairs = pairs[:limit] if limit else pairs
        judgments = out / f"{x}_vs_{y}.pairwise.jsonl"
        judge_answer_pairs(setup, pairs, judgments)
        rows = read_rows(judgments)
        wtl = win_tie_loss([r["verdict"] for r in rows], [r["id"] for r in rows], n_boot=200)
        counts = wtl["counts"]
        points[x] += counts["win"] + counts["tie"] / 2
        points[y] += counts["loss"] + counts["tie"] / 2
        games[f"{x} vs {y}"] = wtl
    return {name: {"score": p, "games": {k: v for k, v in games.items() if name in k}}
            for name, p in points.items()}
