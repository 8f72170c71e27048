"""Stack Exchange source: site dumps -> LIMA candidates (conversation JSONL) and an audit report.

The pipeline (LIMA section 2.1): each site's ``Posts.xml`` is read in one streaming pass that applies the
selection rules (:mod:`lima_align.sources.se_pairs`); sites are independent, so ``workers`` processes run them
in parallel. Then, in each group (STEM, Other; :mod:`lima_align.sources.se_sites`), ``per_group`` pairs are
drawn by temperature sampling over sites (tau = 3: P(site) proportional to size^(1/tau), where a site's size is
its number of questions), each draw taking the site's highest-scoring remaining question.

The report counts, per site, the rows read per post type, the questions considered, kept and rejected by reason
(kept + rejected = considered), the answers considered and their outcomes, and what sampling took.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from lima_align.curate.filters import REASONS
from lima_align.curate.site_sampling import site_weights, temperature_sample
from lima_align.errors import DataError
from lima_align.fileio import write_json, write_jsonl
from lima_align.sources.se_dump import DumpInput, resolve_input
from lima_align.sources.se_pairs import SOURCE, SelectionConfig, SiteResult, select_site
from lima_align.sources.se_sites import EXCLUDED, GROUPS, SiteInfo, classify, load_site_table

__all__ = ["CurateConfig", "CurateResult", "SelectionConfig", "curate_stackexchange", "run_stackexchange"]


@dataclass
class CurateConfig:
    """One Stack Exchange curation run; the defaults are the paper's."""

    paths: list[str]
    sites: list[str] = field(default_factory=list)  # site-name overrides, one per path when given
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    per_group: int = 200
    tau: float = 3.0
    site_groups: str | None = None  # CSV overriding the shipped site table
    workers: int = 1
    progress: bool = False


@dataclass
class CurateResult:
    """The sampled examples (as conversation rows) and the audit report."""

    examples: list[dict[str, Any]]
    report: dict[str, Any]


def plan_sites(cfg: CurateConfig) -> tuple[list[tuple[DumpInput, SiteInfo]], list[SiteInfo]]:
    """The dumps to read with their group, and the excluded sites (named, not read)."""
    if cfg.sites and len(cfg.sites) != len(cfg.paths):
        raise DataError(f"--site was given {len(cfg.sites)} times for {len(cfg.paths)} paths; "
                        "give it once per PATH, in the same order, or not at all")
    table = load_site_table(cfg.site_groups)
    planned, excluded, seen = [], [], {}
    for i, path in enumerate(cfg.paths):
        dump = resolve_input(path, cfg.sites[i] if cfg.sites else None)
        if dump.site in seen:
            raise DataError(f"site {dump.site!r} given twice (also {seen[dump.site]})", path)
        seen[dump.site] = path
        info = classify(dump.site, table)
        if info.group == EXCLUDED:
            excluded.append(info)
        else:
            planned.append((dump, info))
    return planned, excluded


def _site_task(dump: DumpInput, group: str, selection: SelectionConfig) -> SiteResult:
    return select_site(dump, group, selection)


def read_sites(planned: list[tuple[DumpInput, SiteInfo]], cfg: CurateConfig,
               progress: Callable[[int], None] | None = None) -> list[SiteResult]:
    """Run the per-site pass on every planned dump, in ``cfg.workers`` processes; results in input order."""
    if cfg.workers <= 1 or len(planned) <= 1:
        return [select_site(dump, info.group, cfg.selection, progress) for dump, info in planned]
    results: dict[str, SiteResult] = {}
    # spawn, not fork: the parent may hold threads (progress bar), which fork does not carry safely.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=context) as pool:
        futures = {pool.submit(_site_task, dump, info.group, cfg.selection): dump for dump, info in planned}
        for future in as_completed(futures):
            dump = futures[future]
            results[dump.site] = future.result()
            if progress is not None:
                progress(dump.size)
    return [results[dump.site] for dump, _ in planned]


def sample_groups(results: list[SiteResult], cfg: CurateConfig) -> tuple[list[dict], dict[str, Any]]:
    """Temperature-sample ``per_group`` examples in each group; returns them and the sampling report."""
    examples: list[dict] = []
    report: dict[str, Any] = {}
    for group in GROUPS:
        members = [r for r in results if r.group == group]
        pools = {r.site: r.candidates for r in members}
        sizes = {r.site: r.questions["considered"] for r in members}
        seed = f"{cfg.selection.seed}:{group}"
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


def curate_stackexchange(cfg: CurateConfig, progress: Callable[[int], None] | None = None) -> CurateResult:
    """Read, select and sample; returns the examples and the report (writes nothing)."""
    planned, excluded = plan_sites(cfg)
    results = read_sites(planned, cfg, progress)
    examples, sampling = sample_groups(results, cfg)
    report = {
        "source": SOURCE,
        "config": {**asdict(cfg), "selection": asdict(cfg.selection)},
        "sites": {r.site: r.to_report() for r in results},
        "excluded_sites": {info.site: info.note for info in excluded},
        "sampling": sampling,
        "totals": _totals(results, len(examples)),
        "reasons": REASONS,
    }
    return CurateResult(examples, report)


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


def run_stackexchange(cfg: CurateConfig, out: str | Path, report_path: str | Path | None = None,
                      progress: Callable[[int], None] | None = None) -> CurateResult:
    """Curate and write ``out`` (conversation JSONL) and, if asked, the JSON report."""
    result = curate_stackexchange(cfg, progress)
    write_jsonl(out, result.examples)
    if report_path is not None:
        write_json(report_path, result.report)
    return result


def total_bytes(cfg: CurateConfig) -> int:
    """Uncompressed bytes the run will read (for a progress bar)."""
    planned, _ = plan_sites(cfg)
    return sum(dump.size for dump, _ in planned)
