"""``lima-align train CONFIG.yaml [key=value ...]``: fine-tune a causal LM with the LIMA recipe."""

from __future__ import annotations

import argparse

from lima_align.train.plan import STRATEGIES


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train", help="fine-tune a causal LM with the LIMA recipe",
        description="Fine-tune with the LIMA recipe. CONFIG is a YAML preset (configs/train/lima.yaml, demo-cpu.yaml, "
                    "...); key=value overrides any field (lora.enabled=true, epochs=5, chat.max_len=512). "
                    "Multi-GPU: accelerate launch --config_file configs/accelerate/fsdp2.yaml -m lima_align.train "
                    "CONFIG [key=value ...]. --plan prints the memory per GPU and the launch command instead.")
    parser.add_argument("config", nargs="?", help="YAML config (defaults: the paper's recipe)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--data", help="training data file (any format lima-align reads)")
    parser.add_argument("--model", help="base model: built-in name, local folder or hub id")
    parser.add_argument("--out", help="run folder (checkpoints, logs)")
    parser.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    plan = parser.add_argument_group("--plan: memory per GPU and the launch command, from the model's config alone")
    plan.add_argument("--plan", action="store_true", help="print the plan and exit (no weights are loaded)")
    plan.add_argument("--gpus", type=int, default=8, help="GPUs per node (default 8)")
    plan.add_argument("--nodes", type=int, default=1, help="nodes (default 1)")
    plan.add_argument("--gpu-memory", type=float, default=80.0, help="GB per GPU (default 80)")
    plan.add_argument("--strategy", choices=(*STRATEGIES, "all"), default="all", help="default: all of them")
    plan.add_argument("--offload-optimizer", action="store_true",
                      help="ZeRO-3 with the optimizer state in CPU RAM (offload_optimizer in zero3.json)")
    plan.add_argument("--config-json", help="the model's config.json (else: built-in LLaMA shapes, a built-in "
                                            "model, a local folder, or the hub)")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from lima_align.config import dump_yaml
    from lima_align.train import train
    from lima_align.train.run import end_distributed
    from lima_align.train.options import config_from_args

    config_path, overrides = args.config, list(args.overrides)
    if config_path is not None and "=" in config_path and not config_path.endswith((".yaml", ".yml")):
        config_path, overrides = None, [config_path] + overrides
    config = config_from_args(config_path, overrides, data=args.data, model=args.model, out=args.out)
    if args.plan:
        from lima_align.train.plan import PlanRequest, plan_run

        strategies = STRATEGIES if args.strategy == "all" else (args.strategy,)
        request = PlanRequest(args.gpus, args.nodes, args.gpu_memory, strategies, args.config_json,
                              args.offload_optimizer)
        print(plan_run(config, request, config_path or "CONFIG.yaml"))
        return 0
    print("# resolved config\n" + dump_yaml(config), flush=True)
    if args.print_config:
        return 0
    result = train(config, resume=args.resume)
    end_distributed()
    state = "stopped by SIGTERM after saving" if result.interrupted else "done"
    print(f"{state}: {result.global_step} steps, train loss {result.train_loss:.4f}; "
          f"checkpoints: {', '.join(str(c) for c in result.checkpoints) or 'none'}")
    return 0
