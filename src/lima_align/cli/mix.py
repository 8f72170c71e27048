"""``lima-align mix RECIPE.yaml --out train.jsonl [key=value ...]``: argument parsing only (see curate.mix)."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "mix", help="assemble train/dev/test from candidate files (recipe, dedup, strategies, report)",
        description="Assemble the alignment set from candidate files as a recipe says: deduplicate (exact and "
                    "MinHash-LSH near duplicates, and against every dev/test prompt), draw n per input with a "
                    "selection strategy (random, lima, longest, diverse, unfiltered; model-scored: ifd, quality, "
                    "complexity, deita, with their scores cached and recorded), report shortfalls, and "
                    "write OUT, OUT's .dev.jsonl/.test.jsonl, a JSON + Markdown report and a diversity map "
                    "beside it. Preset: configs/mix/lima-paper.yaml (the paper's mix).")
    parser.add_argument("recipe", help="mix recipe YAML (overrides the MixConfig defaults)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="recipe overrides, e.g. seed=1 strategy=longest dedup.threshold=0.8 base_dir=cands; "
                             "scored: strategy=ifd scoring.scorer=gemma-3-270m, or strategy=quality "
                             "scoring.judge=configs/judges/gpt4.yaml scoring.quality_min=4")
    parser.add_argument("--out", required=True, help="training set output (conversation JSONL)")
    parser.add_argument("--no-diversity", action="store_true", help="skip the embedding map (no model load)")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from lima_align.config import ConfigError, dump_yaml, load_config
    from lima_align.curate.mix import MixConfig, build_mix, check_recipe, write_mix

    overrides = list(args.overrides) + (["diversity.enabled=false"] if args.no_diversity else [])
    cfg = load_config(MixConfig, args.recipe, overrides)
    if not cfg.inputs:
        raise ConfigError(f"{args.recipe}: the recipe lists no training inputs")
    print(f"mix recipe:\n{dump_yaml(cfg)}", file=sys.stderr)
    check_recipe(cfg)
    result = build_mix(cfg, log=lambda m: print(f"mix: {m}", file=sys.stderr))
    report = write_mix(result, cfg, args.out)
    print(report["table1_text"]["train"], file=sys.stderr)
    removed = report["dedup"]["removed_by_reason"]
    print(f"mix: train {report['counts']['train']}, dev {report['counts']['dev']}, test {report['counts']['test']}"
          f"; duplicates removed {sum(removed.values())} {removed or ''}", file=sys.stderr)
    for s in report["shortfalls"]:
        print(f"mix: shortfall: {s['input']} ({s['split']}) asked {s['requested']}, got {s['selected']}",
              file=sys.stderr)
    print(f"mix: report {report['outputs']['md']}", file=sys.stderr)
    return 0
