"""Stack Exchange source: site dumps -> LIMA candidates (conversation JSONL) and an audit report.

The pipeline (LIMA section 2.1): each site's ``Posts.xml`` is read in one streaming pass that applies the
selection rules (:mod:`lima_align.sources.se_pairs`), in flat memory. ``workers`` processes share the work: a
plain ``Posts.xml`` of at least two ``min_span_mb`` is cut into byte ranges at row lines, each range is read by
one process, and each site's ranges are then joined in as many question-id ranges on the same pool, so one
large site uses every core and many sites do too (:mod:`lima_align.sources.se_store`). The result is identical
whatever the number of workers. A ``.7z`` member is a stream and is read by one process (7-Zip decompresses it
in its own). Then, in each group (STEM, Other; :mod:`lima_align.sources.se_sites`), ``per_group`` pairs are
drawn by temperature sampling over sites (tau = 3: P(site) proportional to size^(1/tau), where a site's size is
its number of questions), each draw taking the site's highest-scoring remaining question.

The report counts, per site, the rows read per post type, the questions considered, kept and rejected by reason
(kept + rejected = considered), the answers considered and their outcomes, and what sampling took.
"""

from __future__ import annotations

import multiprocessing
import tempfile
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from lima_align.config import to_dict
from lima_align.conversation import Example
from lima_align.curate.filters import REASONS
from lima_align.curate.site_sampling import site_weights, temperature_sample
from lima_align.errors import DataError
from lima_align.sources.base import Curated, Progress
from lima_align.sources.se_dump import DumpInput, dump_label, resolve_input, split_spans
from lima_align.sources.se_pairs import SOURCE, SelectionConfig, SiteResult
from lima_align.sources.se_store import JoinPart, SpanResult, finish_site, id_parts, join_part, scan_span, select_site
from lima_align.sources.se_sites import EXCLUDED, GROUPS, SiteInfo, classify, load_site_table

__all__ = ["SelectionConfig", "StackExchangeConfig", "StackExchangeSource", "curate_stackexchange", "total_bytes"]

_SEL = SelectionConfig()


@dataclass
class StackExchangeConfig:
    """The options of ``curate stackexchange`` (field = option name); every default is the paper's."""

    site: list[str] = field(default_factory=list)  # site name of each path, in order (default: from the path)
    site_groups: str | None = None  # CSV site,group[,note] overriding the shipped STEM/Other/excluded table
    min_score: int = _SEL.min_score
    min_chars: int = _SEL.min_chars
    max_chars: int = _SEL.max_chars
    drop_first_person: bool = _SEL.first_person  # --allow-first-person sets it to False
    drop_references: bool = _SEL.references  # --allow-references sets it to False
    title_prob: float = _SEL.title_prob
    per_group: int = 200  # sampled per group (STEM, Other); also the most kept from one site
    tau: float = 3.0
    seed: int = _SEL.seed
    workers: int = 1  # processes reading sites and byte ranges of large files
    min_span_mb: float = 64.0  # a file is cut into ranges of at least this many MB (10^6 bytes) for the workers
    progress: bool = True  # a progress bar (drawn by the caller; --no-progress sets it to False)

    def __post_init__(self) -> None:
        if self.tau <= 0:
            raise ValueError(f"tau must be positive, got {self.tau}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.min_span_mb <= 0:
            raise ValueError(f"min_span_mb must be positive, got {self.min_span_mb}")

    def selection(self) -> SelectionConfig:
        """The per-site selection rules of this run."""
        return SelectionConfig(min_score=self.min_score, min_chars=self.min_chars, max_chars=self.max_chars,
                               first_person=self.drop_first_person, references=self.drop_references,
                               title_prob=self.title_prob, seed=self.seed, keep_per_site=self.per_group)


class StackExchangeSource:
    """``curate stackexchange``: the :class:`~lima_align.sources.base.Source` of site dumps."""

    name = "stackexchange"
    config_type = StackExchangeConfig
    negated = {"allow_first_person": "drop_first_person", "allow_references": "drop_references",
               "no_progress": "progress"}

    def curate(self, paths: Sequence[str | Path], config: StackExchangeConfig,
               progress: Progress | None = None) -> Curated:
        return curate_stackexchange(paths, config, progress)


def run_config(paths: Sequence[str | Path], cfg: StackExchangeConfig) -> dict[str, Any]:
    """The run's inputs and config, as the report (and the command's first line) record them."""
    return {"paths": [str(p) for p in paths], **to_dict(cfg)}


def plan_sites(paths: Sequence[str | Path],
               cfg: StackExchangeConfig) -> tuple[list[tuple[DumpInput, SiteInfo]], list[SiteInfo]]:
    """The dumps to read with their group, and the excluded sites (named, not read)."""
    if cfg.site and len(cfg.site) != len(paths):
        raise DataError(f"--site was given {len(cfg.site)} times for {len(paths)} paths; "
                        "give it once per PATH, in the same order, or not at all")
    table = load_site_table(cfg.site_groups)
    planned, excluded, seen = [], [], {}
    for i, path in enumerate(paths):
        dump = resolve_input(path, cfg.site[i] if cfg.site else None)
        if dump.site in seen:
            raise DataError(f"site {dump.site!r} given twice (also {seen[dump.site]})", path)
        seen[dump.site] = path
        info = classify(dump.site, table)
        if info.group == EXCLUDED:
            excluded.append(info)
        else:
            planned.append((dump, info))
    return planned, excluded


@dataclass
class _SitePlan:
    dump: DumpInput
    group: str
    workdir: str
    spans: list[tuple[int, int] | None]  # None: the whole dump
    done: list[SpanResult] = field(default_factory=list)
    parts: list[JoinPart] = field(default_factory=list)
    bounds: list = field(default_factory=list)

    @property
    def label(self) -> str:
        return dump_label(self.dump)

    def size(self, k: int) -> int:
        span = self.spans[k]
        return self.dump.size if span is None else span[1] - span[0]

    def scanned(self) -> list[SpanResult]:
        return sorted(self.done, key=lambda s: s.index)


def _plan_spans(planned: list[tuple[DumpInput, SiteInfo]], cfg: StackExchangeConfig, root: str) -> list[_SitePlan]:
    plans = []
    for i, (dump, info) in enumerate(planned):
        workdir = Path(root) / f"site-{i}"
        workdir.mkdir()
        spans: list[tuple[int, int] | None] = [None]
        if cfg.workers > 1 and dump.member is None:
            cut = split_spans(dump.path, cfg.workers, int(cfg.min_span_mb * 1_000_000))
            spans = [None] if len(cut) == 1 else list(cut)
        plans.append(_SitePlan(dump, info.group, str(workdir), spans))
    return plans


def read_sites(planned: list[tuple[DumpInput, SiteInfo]], cfg: StackExchangeConfig,
               progress: Progress | None = None) -> list[SiteResult]:
    """Run the per-site pass on every planned dump, in ``cfg.workers`` processes; results in input order."""
    selection = cfg.selection()
    if cfg.workers <= 1:
        return [select_site(dump, info.group, selection, progress) for dump, info in planned]
    with tempfile.TemporaryDirectory(prefix="lima-se-") as root:
        return _read_in_pool(_plan_spans(planned, cfg, root), cfg, selection, progress)


def _read_in_pool(plans: list[_SitePlan], cfg: StackExchangeConfig, selection: SelectionConfig,
                  progress: Progress | None) -> list[SiteResult]:
    """Scans of every range of every site, then each site's join in id ranges (as many as its file had byte
    ranges), all in one pool; each site is finished here as soon as its last join part is back."""
    results: dict[int, SiteResult] = {}
    # spawn, not fork: the parent may hold threads (progress bar), which fork does not carry safely.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=context) as pool:
        # The largest ranges first, so that the last to finish is a small one.
        order = sorted(((i, k) for i, p in enumerate(plans) for k in range(len(p.spans))),
                       key=lambda ik: -plans[ik[0]].size(ik[1]))
        pending = {pool.submit(scan_span, plans[i].dump, selection, plans[i].workdir, k, plans[i].spans[k]):
                   ("scan", i, k) for i, k in order}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    what, i, k = pending.pop(future)
                    plan = plans[i]
                    if what == "scan":
                        plan.done.append(future.result())
                        if progress is not None:
                            progress(plan.size(k))
                        if len(plan.done) < len(plan.spans):
                            continue
                        plan.bounds = id_parts(plan.scanned(), len(plan.spans))
                        for bounds in plan.bounds:
                            pending[pool.submit(join_part, selection, plan.scanned(), bounds)] = ("join", i, 0)
                        continue
                    plan.parts.append(future.result())
                    if len(plan.parts) == len(plan.bounds):
                        results[i] = finish_site(plan.dump.site, plan.group, plan.label, selection,
                                                 plan.scanned(), plan.parts)
        except BaseException:
            # Tasks not started are dropped; those running finish first (their temporary files must not be
            # removed under them), so on a large file an error may take a range's time to show.
            for future in pending:
                future.cancel()
            raise
    return [results[i] for i in range(len(plans))]


def sample_groups(results: list[SiteResult], cfg: StackExchangeConfig) -> tuple[list[Example], dict[str, Any]]:
    """Temperature-sample ``per_group`` examples in each group; returns them and the sampling report."""
    examples: list[Example] = []
    report: dict[str, Any] = {}
    for group in GROUPS:
        members = [r for r in results if r.group == group]
        pools = {r.site: r.candidates for r in members}
        sizes = {r.site: r.questions["considered"] for r in members}
        seed = f"{cfg.seed}:{group}"
        drawn = temperature_sample(pools, sizes, cfg.per_group, cfg.tau, seed)  # type: ignore[arg-type]
        examples.extend(example for _, example in drawn)
        weights = site_weights({s: n for s, n in sizes.items() if pools[s]}, cfg.tau)
        report[group] = {
            "requested": cfg.per_group, "sampled": len(drawn),
            "sites": {s: {"size": sizes[s], "eligible_returned": len(pools[s]),
                          "weight": round(weights.get(s, 0.0), 6),
                          "sampled": sum(1 for site, _ in drawn if site == s)} for s in sorted(pools)},
        }
    return examples, report


def curate_stackexchange(paths: Sequence[str | Path], cfg: StackExchangeConfig,
                         progress: Progress | None = None) -> Curated:
    """Read, select and sample; returns the examples and the report (writes nothing)."""
    planned, excluded = plan_sites(paths, cfg)
    results = read_sites(planned, cfg, progress)
    examples, sampling = sample_groups(results, cfg)
    report = {
        "source": SOURCE,
        "config": run_config(paths, cfg),
        "sites": {r.site: r.to_report() for r in results},
        "excluded_sites": {info.site: info.note for info in excluded},
        "sampling": sampling,
        "totals": _totals(results, len(examples)),
        "reasons": REASONS,
    }
    return Curated(examples, report)


def _totals(results: list[SiteResult], written: int) -> dict[str, Any]:
    rejected: dict[str, int] = {}
    for r in results:
        for reason, n in r.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + n
    return {"sites_read": len(results),
            "questions_considered": sum(r.questions["considered"] for r in results),
            "questions_kept": sum(r.questions["kept"] for r in results),
            "questions_rejected": dict(sorted(rejected.items(), key=lambda kv: -kv[1])),
            "examples_written": written}


def total_bytes(paths: Sequence[str | Path], cfg: StackExchangeConfig) -> int:
    """Uncompressed bytes the run will read (for a progress bar)."""
    planned, _ = plan_sites(paths, cfg)
    return sum(dump.size for dump, _ in planned)
