"""Assemble the alignment set from candidate files: a recipe (:class:`MixConfig`) -> train, dev, test and a report.

Order of work (each step counts what it drops, by reason):

1. Read every input (any conversation file :mod:`lima_align.formats.rows` reads), keep the rows whose ``meta``
   matches the input's ``where`` (dotted keys, e.g. ``group: STEM``, ``curation.split: dev``), and set the
   input's ``source`` / ``license`` where given.
2. Held-out sets first: the test inputs are deduplicated among themselves (prompts) and drawn (seeded, uniform),
   then the dev inputs, deduplicated against the drawn test prompts too.
3. The training candidates of all inputs, in recipe order, are deduplicated (:mod:`lima_align.curate.dedup`):
   against every dev/test prompt (exact and near, always), then exact and near duplicates of prompts and
   responses across sources; the earliest row of a duplicate group survives.
4. Each training input draws ``n`` from its remaining pool with its strategy (:mod:`lima_align.curate.strategies`).
   A pool that cannot give ``n`` is a *shortfall*: reported, never filled from another input.
5. Report (:func:`mix_report`): Table 1 per split, dedup and shortfall counts, licences, the diversity map of
   the training set; written as JSON and Markdown beside the output (:func:`write_mix`).

Paths in the recipe are relative to ``base_dir`` ("" = the current directory).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lima_align.conversation import Example, ReadReport
from lima_align.curate.dedup import REASONS as DEDUP_REASONS
from lima_align.curate.dedup import DedupConfig, Deduplicator
from lima_align.curate.diversity import DiversityConfig
from lima_align.curate.scoring import ScoringConfig
from lima_align.curate.scored import ALL_STRATEGIES, SCORED, Scorers
from lima_align.curate.strategies import Context, get_strategy
from lima_align.errors import LimaError
from lima_align.fileio import atomic_write, write_json
from lima_align.curate.table1 import TokenCounter, format_table, table1

SPLITS = ("train", "dev", "test")


@dataclass
class InputSpec:
    """One candidate file and how many examples to draw from it."""

    path: str = ""
    n: int = 0
    name: str = ""  # label in the report and in meta["mix"]["input"] (default: the file stem)
    source: str = ""  # replaces each row's source ("" keeps it), e.g. "authored" for a plain JSONL
    where: dict[str, str] = field(default_factory=dict)  # meta key -> value every row must have
    license: str = ""  # licence for rows whose meta has none
    strategy: str = ""  # "" = the recipe's strategy (train inputs only; dev/test are drawn at random)
    format: str = ""  # row format ("" = detect)

    def label(self) -> str:
        return self.name or Path(self.path).stem


@dataclass
class MixConfig:
    """A mix recipe; YAML presets under ``configs/mix/`` override these defaults."""

    inputs: list[InputSpec] = field(default_factory=list)  # training inputs
    dev: list[InputSpec] = field(default_factory=list)
    test: list[InputSpec] = field(default_factory=list)
    seed: int = 0
    strategy: str = "lima"  # random | lima | longest | diverse | unfiltered | ifd | quality | complexity | deita
    base_dir: str = ""  # input paths are relative to this folder ("" = the current directory)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    diversity: DiversityConfig = field(default_factory=DiversityConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)  # the scored strategies' scorer and judge

    def strategies(self) -> set[str]:
        """The strategies the training inputs draw with."""
        return {s.strategy or self.strategy for s in self.inputs}

    def __post_init__(self) -> None:
        for spec in [*self.inputs, *self.dev, *self.test]:
            if not spec.path or spec.n < 0:
                raise ValueError(f"input {spec.label()!r}: give a path and n >= 0")
        for name in [self.strategy, *(s.strategy for s in self.inputs if s.strategy)]:
            if name not in ALL_STRATEGIES:
                raise ValueError(f"unknown strategy {name!r} (known: {', '.join(ALL_STRATEGIES)})")
        labels = [s.label() for s in [*self.inputs, *self.dev, *self.test]]
        if len(set(labels)) != len(labels):
            raise ValueError(f"input names must be unique (give each a name): {labels}")


@dataclass
class Pool:
    """The rows of one input after reading and ``where``, and what happened to the others."""

    spec: InputSpec
    split: str
    rows: list[Example]
    read: dict[str, Any]
    dropped: Counter = field(default_factory=Counter)


@dataclass
class MixResult:
    splits: dict[str, list[Example]]
    pools: list[Pool]
    dedup: dict[str, Any]
    selection: dict[str, Any]
    shortfalls: list[dict[str, Any]]


def _meta_value(ex: Example, key: str) -> Any:
    if key == "source":
        return ex.source
    node: Any = ex.meta
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def load_pool(spec: InputSpec, split: str, base_dir: str) -> Pool:
    """Read one input, apply ``where``, ``source`` and ``license``; count what ``where`` leaves out."""
    from lima_align.formats.rows import read_examples

    path = Path(base_dir) / spec.path if base_dir else Path(spec.path)
    report = ReadReport()
    rows = read_examples(path, spec.format or None, report=report, skip_bad=True)
    pool = Pool(spec, split, [], {"path": str(path), **report.to_dict(), "rows": len(rows)})
    for ex in rows:
        if any(str(_meta_value(ex, k)) != str(v) for k, v in spec.where.items()):
            pool.dropped["not_matching_where"] += 1
            continue
        if spec.source:
            ex.source = spec.source
        if spec.license and not ex.meta.get("license"):
            ex.meta["license"] = spec.license
        pool.rows.append(ex)
    return pool


def _dedup_pools(pools: list[Pool], cfg: DedupConfig, heldout: list[Example], fields: list[str]) -> list[dict]:
    """Deduplicate the pools' rows together (in order) in place; returns the removals as report rows."""
    items = [(p, ex) for p in pools for ex in p.rows]
    dedup = Deduplicator(DedupConfig(**{**cfg.__dict__, "fields": fields}),
                         [(ex.id, ex.prompt) for ex in heldout])
    records = [{"prompt": ex.prompt, "response": ex.response} for _, ex in items]
    removals = dedup.run(records, [ex.id for _, ex in items])
    gone = {r.index for r in removals}
    for p in pools:
        p.rows = []
    for i, (p, ex) in enumerate(items):
        if i not in gone:
            p.rows.append(ex)
    out = []
    for r in removals:
        pool, ex = items[r.index]
        pool.dropped[r.reason] += 1
        out.append({"id": ex.id, "input": pool.spec.label(), "reason": r.reason, "of": r.of,
                    "similarity": r.similarity})
    return out


def _draw(pool: Pool, cfg: MixConfig, embedder: Any, scorers: Any) -> tuple[list[Example], dict[str, Any]]:
    """Draw ``n`` from a pool with its strategy (held-out pools: random); tag each example's meta."""
    spec = pool.spec
    name = "random" if pool.split != "train" else (spec.strategy or cfg.strategy)
    ctx = Context(random.Random(f"{cfg.seed}:{pool.split}:{spec.label()}"), embedder, scorers)
    sel = get_strategy(name, ALL_STRATEGIES)(pool.rows, spec.n, ctx)
    pool.dropped.update(sel.refused)
    chosen = []
    for i, ex in enumerate(sel.chosen):
        tag = {"strategy": name, "input": spec.label(), "split": pool.split, "seed": cfg.seed}
        if sel.scores:
            tag["scores"] = sel.scores[i]
        chosen.append(Example(ex.id, list(ex.conversations), ex.source, {**ex.meta, "mix": tag}))
    info = {"input": spec.label(), "split": pool.split, "strategy": name, "requested": spec.n,
            "available": len(pool.rows) - sum(sel.refused.values()), "selected": len(chosen),
            "refused": dict(sel.refused), "audit": sel.audit}
    return chosen, info


def _unique_ids(examples: list[Example]) -> int:
    """Make ids unique within a split (a repeated id gets ``~input``); returns how many were renamed."""
    seen: set[str] = set()
    renamed = 0
    for ex in examples:
        if ex.id in seen:
            ex.id = f"{ex.id}~{ex.meta['mix']['input']}"
            renamed += 1
        seen.add(ex.id)
    return renamed


def build_mix(cfg: MixConfig, embedder: Any = None, scorers: Any = None,
              log: Callable[[str], None] = lambda m: None) -> MixResult:
    """Run steps 1-4 (see the module docstring); writes nothing but the scores' caches. ``scorers``: a
    :class:`~lima_align.curate.scored.Scorers` (default: made from ``cfg.scoring`` when a strategy needs it)."""
    pools = {split: [load_pool(s, split, cfg.base_dir) for s in getattr(cfg, "inputs" if split == "train" else split)]
             for split in SPLITS}
    needs = cfg.strategies()
    if embedder is None and needs & {"diverse", "deita"}:
        from lima_align.curate.diversity import load_embedder

        embedder = load_embedder(cfg.diversity)
    if scorers is None and needs & set(SCORED):
        scorers = Scorers(cfg.scoring, log)
    splits: dict[str, list[Example]] = {}
    removed: dict[str, list[dict]] = {}
    selection, heldout = [], []
    for split in ("test", "dev", "train"):
        fields = list(cfg.dedup.fields) if split == "train" else ["prompt"]
        removed[split] = _dedup_pools(pools[split], cfg.dedup, heldout, fields)
        splits[split] = []
        for pool in pools[split]:
            chosen, info = _draw(pool, cfg, embedder, scorers)
            splits[split] += chosen
            selection.append(info)
        info_renamed = _unique_ids(splits[split])
        if info_renamed:
            selection.append({"split": split, "ids_renamed": info_renamed})
        heldout += splits[split]
    shortfalls = [{k: s[k] for k in ("input", "split", "requested", "available", "selected")}
                  for s in selection if "requested" in s and s["selected"] < s["requested"]]
    all_pools = [p for split in SPLITS for p in pools[split]]
    dedup = {"config": cfg.dedup.__dict__, "reasons": DEDUP_REASONS,
             "removed_by_reason": dict(Counter(r["reason"] for rs in removed.values() for r in rs)),
             "removed": removed}
    return MixResult(splits, all_pools, dedup, {"draws": selection}, shortfalls)


def check_recipe(cfg: MixConfig) -> None:
    """Errors a user can fix before anything is read: missing files, a judge-scored strategy with no judge."""
    base = Path(cfg.base_dir) if cfg.base_dir else Path()
    missing = [str(base / s.path) for s in [*cfg.inputs, *cfg.dev, *cfg.test] if not (base / s.path).exists()]
    if missing:
        raise LimaError(f"mix recipe inputs not found: {', '.join(missing)} (paths are relative to "
                        f"base_dir={cfg.base_dir or '.'}; produce them with `lima-align curate ...`)")
    scoring_identity(cfg)  # the judge YAML and its prompts load (or fail here, naming what is wrong)


def scoring_identity(cfg: MixConfig) -> dict[str, Any]:
    """Who scores each scored strategy the recipe uses (scorer model and method, judge and prompt versions):
    part of the mix stage's key, so the mix is redone when a scorer, a judge or a prompt changes."""
    scorers = Scorers(cfg.scoring)
    return {name: scorers.provenance(name) for name in sorted(cfg.strategies() & set(SCORED))}


def license_counts(examples: list[Example]) -> dict[str, Any]:
    """Rows per licence string, and per family (the version dropped: "CC BY-SA 3.0" -> "CC BY-SA")."""
    exact = Counter(str(ex.meta.get("license") or "unknown") for ex in examples)
    family = Counter()
    for name, n in exact.items():
        family[re.sub(r"\s+\d+(?:\.\d+)*$", "", name)] += n
    return {"by_license": dict(exact.most_common()), "by_family": dict(family.most_common())}


def mix_report(result: MixResult, cfg: MixConfig, counter: TokenCounter | None = None,
               diversity: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report document: config, per-input reading, Table 1 per split, dedup, draws, shortfalls, licences."""
    from lima_align.config import to_dict

    tables = {split: table1(exs, counter) for split, exs in result.splits.items()}
    inputs = [{"input": p.spec.label(), "split": p.split, "read": p.read, "dropped": dict(p.dropped)}
              for p in result.pools]
    return {"config": to_dict(cfg), "counts": {s: len(e) for s, e in result.splits.items()},
            "table1": {s: t.to_dict() for s, t in tables.items()},
            "table1_text": {s: format_table(t) for s, t in tables.items()},
            "inputs": inputs, "dedup": result.dedup, "selection": result.selection,
            "shortfalls": result.shortfalls,
            "licenses": {s: license_counts(e) for s, e in result.splits.items()},
            "diversity": diversity}


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown (the JSON holds the details: every removal with its reason)."""
    lines = ["# Mix report", "", f"strategy `{report['config']['strategy']}`, seed {report['config']['seed']}; "
             + ", ".join(f"{s}: {n}" for s, n in report["counts"].items()), ""]
    for split, text in report["table1_text"].items():
        lines += [f"## Table 1: {split}", "", "```", text, "```", ""]
    lines += ["## Shortfalls", ""]
    lines += [f"- {s['input']} ({s['split']}): asked {s['requested']}, {s['available']} available, "
              f"selected {s['selected']}" for s in report["shortfalls"]] or ["none"]
    lines += ["", "## Removed or refused, by input and reason", "", "| input | split | rows | reason | count |",
              "|---|---|---|---|---|"]
    for inp in report["inputs"]:
        for reason, n in sorted(inp["dropped"].items()) or [("-", 0)]:
            lines.append(f"| {inp['input']} | {inp['split']} | {inp['read']['rows']} | {reason} | {n} |")
    lines += ["", "## Licences (rows)", ""]
    for split, lic in report["licenses"].items():
        lines.append(f"- {split}: " + "; ".join(f"{k}: {v}" for k, v in lic["by_family"].items()))
    scored = [d for d in report["selection"]["draws"] if d.get("audit", {}).get("scored_by")]
    if scored:
        lines += ["", "## Scores (scored strategies)", "", "| input | strategy | scored by | pool median | "
                  "chosen min / median / max |", "|---|---|---|---|---|"]
        for d in scored:
            pool, chosen = d["audit"].get("pool") or {}, d["audit"].get("chosen") or {}
            lines.append(f"| {d['input']} | {d['strategy']} | {_scored_by(d['audit']['scored_by'])} | "
                         f"{pool.get('median', '-')} | {chosen.get('min', '-')} / {chosen.get('median', '-')} / "
                         f"{chosen.get('max', '-')} |")
    div = report.get("diversity")
    if div and div.get("examples"):
        lines += ["", "## Diversity (training prompts)", "",
                  f"{div['examples']} prompts, {div['clusters']} clusters; largest cluster share "
                  f"{div['largest_cluster_share']:.1%}; mean pairwise cosine distance "
                  f"{div['mean_pairwise_distance']:.3f}", "", "| source | examples | clusters | mean distance |",
                  "|---|---|---|---|"]
        lines += [f"| {s} | {d['examples']} | {d['clusters']} | {d['mean_pairwise_distance']:.3f} |"
                  for s, d in div["sources"].items()]
        if div.get("png"):
            lines += ["", f"![diversity map]({Path(div['png']).name})"]
    return "\n".join(lines) + "\n"


def _scored_by(by: dict[str, Any]) -> str:
    if "model" in by:
        return f"{by['model']['name']} ({by['method']}, {by['max_tokens']} tokens)"
    return "; ".join(f"{a}: {p['judge']['name']} ({p['judge']['model']}), prompt {p['prompt']['version']}"
                     for a, p in by.items())


def output_paths(out: str | Path) -> dict[str, Path]:
    """Files written beside ``out`` (``train.jsonl`` -> ``train.dev.jsonl``, ``train.report.json``, ...)."""
    out = Path(out)
    stem = out.name[:-len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    side = {k: out.with_name(f"{stem}.{k}") for k in ("dev.jsonl", "test.jsonl", "report.json", "report.md",
                                                        "diversity.png")}
    return {"train": out, "dev": side["dev.jsonl"], "test": side["test.jsonl"], "json": side["report.json"],
            "md": side["report.md"], "png": side["diversity.png"]}


def write_mix(result: MixResult, cfg: MixConfig, out: str | Path, counter: TokenCounter | None = None,
              ) -> dict[str, Any]:
    """Write the splits (GAIR/lima JSONL), the diversity map and the report; returns the report."""
    from lima_align.formats.rows import write_examples

    paths = output_paths(out)
    for split in SPLITS:
        if split == "train" or result.splits[split] or getattr(cfg, split):
            write_examples(paths[split], result.splits[split])
    diversity = None
    if cfg.diversity.enabled and result.splits["train"]:
        from lima_align.curate.diversity import diversity_map

        train = result.splits["train"]
        diversity = diversity_map([ex.prompt for ex in train], [ex.source for ex in train], cfg.diversity,
                                  cfg.seed, paths["png"])
    report = mix_report(result, cfg, counter, diversity)
    report["outputs"] = {k: str(v) for k, v in paths.items()}
    write_json(paths["json"], report)
    with atomic_write(paths["md"]) as fh:
        fh.write(render_markdown(report))
    return report
