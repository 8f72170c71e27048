"""Benchmark: our default training path (packing, chunked loss) vs TRL's ``SFTTrainer`` with its defaults, on CPU.

Both trainers get the SAME tokens: the real LIMA training set rendered by our chat format (EOT added, loss on the
assistant tokens), passed to TRL pre-tokenised with its ``labels``, so only the way each trainer batches and
computes differs. Both start from the same weights, see the same examples in the same order (Trainer's seeded
sampler), take the same number of optimizer steps with the same examples per step, the same optimizer settings
(AdamW 0.9/0.95, weight decay 0.1, lr 1e-5 -> 1e-6, no warmup) and no residual dropout (deterministic losses).

* ``ours``: ``lima_align.train`` as shipped: length-rebalanced micro-batches, chunked LM-head loss on supervised tokens,
  bf16 autocast where the CPU has native bf16 (fp32 weights), micro-batch 4 with gradient accumulation.
* ``trl``: ``SFTTrainer`` + ``SFTConfig`` defaults for everything that decides speed: padded batches (no packing,
  no padding-free), ``per_device_train_batch_size=8``, gradient checkpointing on, ``bf16=True`` (autocast on
  CPU; ``--trl-fp32`` turns it off), its own loss.
* ``trl-tuned``: the same, configured for speed the way TRL's docs advise when memory allows: gradient
  checkpointing off, bf16 autocast. Padding-free / packing stay off: TRL documents them for FlashAttention only
  (with sdpa a packed row costs attention over the whole row), and there is no FlashAttention on a CPU.

A busy machine slows whichever trainer runs while it is busy, so the trainers are alternated: ``--rounds`` rounds
(default 3), each running every trainer once in a rotated order (ours, trl, trl-tuned; then trl, trl-tuned, ours;
...). Each round gives one ratio ours / baseline per baseline (runs minutes apart see about the same load); the
benchmark prints every run, then the median ratio and its spread (min - max) over the rounds.

Each trainer runs in its own subprocess (so peak RSS is its own). Measured: trained (non-padding) tokens per second
over ``trainer.train()``, padding share of the positions computed, peak RSS, the mean training loss of the last
steps, and the loss of both final models on the same held-out examples (token-weighted, fp32, eval mode).

TRL is only needed here: ``pip install trl==1.16.0 torch==2.13.0`` (pin torch so pip does not replace it).
Usage: ``python benchmarks/bench_train.py [--rounds 3] [--steps 2] [--max-examples 48] [--max-len 1024]
[--model NAME]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
LIMA = REPO.parent / "shared" / "data" / "lima" / "lima_train_instruction_response.jsonl"


class CountingCollator:
    """Wraps a collator: counts real (non-padding) tokens and the positions actually computed."""

    def __init__(self, inner: Any):
        self.inner, self.batches = inner, []

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.inner(features)
        self.batches.append((len(features), sum(len(f["input_ids"]) for f in features),
                             int(batch["input_ids"].numel())))
        return batch

    def trained(self, examples: int) -> tuple[int, int]:
        """(real tokens, positions) of the first ``examples`` examples: the data loader collates one batch ahead."""
        real = positions = seen = 0
        for n, batch_real, batch_positions in self.batches:
            if seen >= examples:
                break
            seen, real, positions = seen + n, real + batch_real, positions + batch_positions
        return real, positions


def train_config(args: argparse.Namespace, out: Path):
    from lima_align.chat_format import ChatFormat
    from lima_align.train import TrainConfig

    return TrainConfig(model=args.model, data=str(args.data), out=str(out), max_examples=args.max_examples,
                       chat=ChatFormat(max_len=args.max_len), epochs=100, batch_size=args.batch_size,
                       residual_dropout=0.0, tensorboard=False, logging_steps=1, seed=args.seed, dtype="float32")


def run_ours(args: argparse.Namespace, prepared: Any, out: Path) -> tuple[Any, CountingCollator]:
    from lima_align.train.trainer import build_trainer

    config = train_config(args, out)
    trainer = build_trainer(config, prepared.model, prepared.tokenizer, prepared.dataset, {})
    trainer.args.save_strategy, trainer.args.max_steps = "no", args.steps
    trainer.data_collator = counter = CountingCollator(trainer.data_collator)
    trainer.train()
    return trainer, counter


TRAINERS = ("ours", "trl", "trl-tuned")
TRL_TUNED = {"gradient_checkpointing": False, "bf16": True}  # TRL's speed advice that applies without FlashAttention


def run_trl(args: argparse.Namespace, prepared: Any, out: Path, tuned: bool = False) -> tuple[Any, CountingCollator]:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    config = train_config(args, out)
    rows = Dataset.from_list([{"input_ids": item["input_ids"], "labels": item["labels"]}
                              for item in prepared.dataset.items])
    sft = SFTConfig(output_dir=str(out), max_steps=args.steps, max_length=args.max_len, seed=args.seed,
                    data_seed=args.seed, learning_rate=config.lr, lr_scheduler_type="linear", warmup_steps=0,
                    adam_beta1=config.beta1, adam_beta2=config.beta2, weight_decay=config.weight_decay,
                    per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
                    save_strategy="no", report_to="none", logging_steps=1, use_cpu=True,
                    **(TRL_TUNED if tuned else {"bf16": False} if args.trl_fp32 else {}))
    trainer = SFTTrainer(model=prepared.model, args=sft, train_dataset=rows, processing_class=prepared.tokenizer)
    trainer.data_collator = counter = CountingCollator(trainer.data_collator)
    trainer.train()
    return trainer, counter


def held_out_loss(model: Any, prepared: Any, items: list[dict[str, list[int]]]) -> float:
    """Token-weighted loss over the supervised tokens of ``items`` (examples neither trainer trains on)."""
    from lima_align.train.collate import PaddedCollator
    from lima_align.train.loss import lm_loss_sum

    model = model.float().eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for item in items:
            loss_sum, k = lm_loss_sum(model, PaddedCollator(prepared.tokenizer.pad_token_id)([item]), 0)
            total, count = total + float(loss_sum), count + k
    return total / max(count, 1)


def one_trainer(args: argparse.Namespace) -> dict[str, Any]:
    """Run one trainer in this process and return its measurements (printed as JSON by the child)."""
    from lima_align.train.data import RenderedDataset
    from lima_align.train.run import prepare

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    out = Path(args.out) / args.only
    prepared = prepare(train_config(args, out))
    held_out = prepared.dataset.items[-args.held_out:]
    prepared.dataset = RenderedDataset(prepared.dataset.items[:-args.held_out])
    start = time.perf_counter()
    if args.only == "ours":
        trainer, counter = run_ours(args, prepared, out)
    else:
        trainer, counter = run_trl(args, prepared, out, tuned=args.only == "trl-tuned")
    seconds = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    tail = losses[-max(1, len(losses) // 3):]
    real, positions = counter.trained(trainer.state.global_step * args.batch_size)
    return {"trainer": args.only, "steps": trainer.state.global_step, "seconds": seconds,
            "tokens": real, "tokens_per_s": real / seconds, "padding_share": 1.0 - real / max(positions, 1),
            "first_loss": losses[0], "last_losses_mean": sum(tail) / len(tail),
            "held_out_loss": held_out_loss(trainer.model, prepared, held_out),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child(args: argparse.Namespace, which: str) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--only", which] + [a for a in sys.argv[1:] if a != "--only"]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{which} failed:\n{(done.stdout + done.stderr)[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_run(r: dict[str, Any], round_no: int) -> None:
    print(f"{round_no:>5} {r['trainer']:10} {r['steps']:>5} {r['tokens']:>8} {r['tokens_per_s']:>8.1f} "
          f"{r['padding_share']:>8.1%} {r['first_loss']:>7.4f} {r['last_losses_mean']:>10.4f} "
          f"{r['held_out_loss']:>9.4f} {r['peak_rss_mb']:>11.0f} {r['seconds']:>8.1f}", flush=True)


def ratios(rounds: list[dict[str, dict[str, Any]]], baseline: str) -> list[float]:
    """ours / baseline trained tokens per second, one ratio per round."""
    return [r["ours"]["tokens_per_s"] / r[baseline]["tokens_per_s"] for r in rounds]


def report(rounds: list[dict[str, dict[str, Any]]]) -> None:
    for baseline, target in (("trl", 1.5), ("trl-tuned", 1.1)):
        values = ratios(rounds, baseline)
        held = [r[baseline]["held_out_loss"] for r in rounds]
        print(f"ours / {baseline}: median {statistics.median(values):.2f}x over {len(values)} rounds "
              f"(spread {min(values):.2f}x - {max(values):.2f}x; target >= {target}x); held-out loss ours "
              f"{rounds[0]['ours']['held_out_loss']:.4f} vs {baseline} {held[0]:.4f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", default=str(LIMA))
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps for each trainer")
    parser.add_argument("--batch-size", type=int, default=8, help="examples per optimizer step (TRL's default)")
    parser.add_argument("--max-examples", type=int, default=48, help="first N LIMA examples (0: all 1,030)")
    parser.add_argument("--max-len", type=int, default=1024, help="trim length (TRL's default max_length)")
    parser.add_argument("--held-out", type=int, default=4, help="last N examples: held-out loss, not trained on")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--trl-fp32", action="store_true", help="turn off TRL's default bf16 autocast")
    parser.add_argument("--out", default="/tmp/lima-bench-train")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the trainers (default 3)")
    parser.add_argument("--only", choices=TRAINERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.max_examples = args.max_examples or None
    if args.only:
        print(json.dumps(one_trainer(args)))
        return 0
    try:
        import trl
    except ImportError:
        print("bench_train needs TRL for the baseline (not a lima-align dependency): "
              "pip install trl==1.16.0 torch==2.13.0", file=sys.stderr)
        return 1
    print(f"model {args.model}, {args.steps} steps x {args.batch_size} examples, first "
          f"{args.max_examples or 'all'} LIMA examples trimmed to {args.max_len} tokens, {args.threads} threads, "
          f"trl {trl.__version__}, torch {torch.__version__}", flush=True)
    print(f"{'round':>5} {'trainer':10} {'steps':>5} {'tokens':>8} {'tok/s':>8} {'padding':>8} {'loss@1':>7} "
          f"{'loss(last)':>10} {'held-out':>9} {'peak RSS MB':>11} {'seconds':>8}", flush=True)
    rounds = []
    for n in range(max(1, args.rounds)):
        order = TRAINERS[n % len(TRAINERS):] + TRAINERS[:n % len(TRAINERS)]
        results = {}
        for which in order:
            results[which] = child(args, which)
            print_run(results[which], n + 1)
        rounds.append(results)
    report(rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
