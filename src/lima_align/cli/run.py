"""``lima-align run RUN.yaml``: the whole pipeline (curate -> mix -> train -> select -> generate -> judge ->
report) as one resumable job; see :mod:`lima_align.pipeline.run`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from lima_align.pipeline.run import STAGES

    parser = sub.add_parser(
        "run", help="the whole LIMA pipeline from dumps to report as one resumable job",
        description="Curate every source of the run config, mix, fine-tune, select a checkpoint on the dev prompts, "
                    "answer the test prompts, judge them against the baselines and write the report, all in one "
                    "run folder. A re-run skips every stage whose inputs and settings are unchanged (content "
                    "hashes), redoes the ones that changed and everything after them, and resumes an interrupted "
                    "stage. The paper's setup: configs/runs/lima-paper.yaml.")
    parser.add_argument("config", metavar="RUN.yaml", help="run config (see configs/runs/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. out=runs/x train_settings.epochs=10 select.enabled=false")
    parser.add_argument("--from", dest="rerun_from", choices=STAGES, metavar="STAGE",
                        help=f"run this stage and every later one again ({', '.join(STAGES)})")
    parser.add_argument("--print-config", action="store_true", help="print the resolved run config and exit")
    parser.add_argument("--status", action="store_true", help="print each stage's state in the run folder and exit")
    parser.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from lima_align.config import dump_yaml
    from lima_align.pipeline.run import load_run_config, run_pipeline, stage_status

    cfg = load_run_config(args.config, args.overrides)
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    if args.status:
        for name, state in stage_status(cfg):
            print(f"{name:<28} {state}")
        return 0
    run_pipeline(cfg, rerun_from=args.rerun_from)
    return 0
