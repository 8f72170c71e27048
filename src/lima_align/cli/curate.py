"""``lima-align curate <source>``: turn raw community dumps into LIMA-style candidate examples."""

from __future__ import annotations

import argparse
import json
import sys

from lima_align.cli.curate_sources import register_sources
from lima_align.sources.stackexchange import CurateConfig, SelectionConfig, run_stackexchange, total_bytes

_SEL = SelectionConfig()
_RUN = CurateConfig(paths=[])


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("curate", help="build candidate examples from raw source dumps",
                            description="Build LIMA-style candidates (conversation JSONL + audit report) "
                                        "from raw source dumps on disk.")
    sources = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    _register_stackexchange(sources)
    register_sources(sources)


def _register_stackexchange(sources: argparse._SubParsersAction) -> None:
    p = sources.add_parser(
        "stackexchange", help="Stack Exchange site dumps -> LIMA candidates",
        description="Select LIMA Stack Exchange pairs from site dumps (each PATH: a <site>.7z archive, a "
                    "directory holding Posts.xml, or a Posts.xml file; the site name comes from the archive or "
                    "directory name). Defaults are the paper's: top answer score >= 10, 1,200-4,096 "
                    "characters, no first person, no references to other answers or the site, 200 per group "
                    "(STEM, Other) by temperature sampling over sites with tau = 3.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="site dumps (.7z, directory or Posts.xml)")
    p.add_argument("--out", required=True, help="output conversation JSONL")
    p.add_argument("--report", help="write the audit report (JSON) here")
    p.add_argument("--site", action="append", default=[], metavar="NAME",
                   help="site name for each PATH, in order (default: from the file or directory name)")
    p.add_argument("--site-groups", metavar="CSV", help="CSV site,group[,note] overriding the shipped "
                   "STEM/Other/excluded table")
    p.add_argument("--min-score", type=int, default=_SEL.min_score, help="minimum score of the top answer (default: %(default)s)")
    p.add_argument("--min-chars", type=int, default=_SEL.min_chars, help="minimum answer length (characters) (default: %(default)s)")
    p.add_argument("--max-chars", type=int, default=_SEL.max_chars, help="maximum answer length (characters) (default: %(default)s)")
    p.add_argument("--allow-first-person", action="store_true", help="keep first-person answers")
    p.add_argument("--allow-references", action="store_true",
                   help="keep answers that refer to other answers or the site")
    p.add_argument("--title-prob", type=float, default=_SEL.title_prob,
                   help="probability that a prompt is the question title (else its body) (default: %(default)s)")
    p.add_argument("--per-group", type=int, default=_RUN.per_group, help="examples sampled per group (default: %(default)s)")
    p.add_argument("--tau", type=float, default=_RUN.tau, help="sampling temperature over sites (default: %(default)s)")
    p.add_argument("--seed", type=int, default=_SEL.seed, help="seed of the prompt coin and the sampling (default: %(default)s)")
    p.add_argument("--workers", type=int, default=_RUN.workers, help="sites read in parallel (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=stackexchange)


def stackexchange(args: argparse.Namespace) -> int:
    """Handler of ``curate stackexchange``: build the config, run, print a summary."""
    selection = SelectionConfig(min_score=args.min_score, min_chars=args.min_chars, max_chars=args.max_chars,
                                first_person=not args.allow_first_person,
                                references=not args.allow_references, title_prob=args.title_prob,
                                seed=args.seed, keep_per_site=args.per_group)
    cfg = CurateConfig(paths=list(args.paths), sites=list(args.site), selection=selection,
                       per_group=args.per_group, tau=args.tau, site_groups=args.site_groups,
                       workers=args.workers, progress=not args.no_progress)
    print(f"curate stackexchange: {json.dumps(cfg.__dict__, default=lambda o: o.__dict__)}", file=sys.stderr)
    from tqdm import tqdm

    with tqdm(total=total_bytes(cfg), unit="B", unit_scale=True, disable=True if args.no_progress else None,
              desc="Posts.xml", file=sys.stderr) as bar:
        result = run_stackexchange(cfg, args.out, args.report, progress=bar.update)
    totals = result.report["totals"]
    per_group = {g: s["sampled"] for g, s in result.report["sampling"].items()}
    print(f"wrote {totals['examples_written']} examples to {args.out} ({per_group}); "
          f"{totals['questions_kept']} of {totals['questions_considered']} questions passed the filters",
          file=sys.stderr)
    if totals["examples_written"] == 0:
        top = ", ".join(f"{k} {v}" for k, v in list(totals["questions_rejected"].items())[:4]) or "no sites read"
        print(f"lima-align: warning: no example passed the filters (most rejections: {top}); "
              "see the report, or relax --min-score / --min-chars", file=sys.stderr)
        return 1
    return 0
