"""GPU check: what a lent H100/H200 measures of lima-align in <= 8 minutes, offline, written to ONE JSON.

    python gpu_check.py [--out gpu-check.json] [--peak-tflops 989] [--budget-s 420]
    python gpu_check.py --quick        # a 2.4M-parameter model, 2 steps: a smoke run, on CPU too

Nothing is downloaded. The model is a random-weight Llama of TinyLlama-1.1B's shape (hidden 2048, 22 layers,
32 heads / 4 KV heads, MLP 5632, vocab 32000, untied head: 1.10B parameters) built from a ``LlamaConfig``. There is
no tokenizer: the data are synthetic rendered examples shaped like ``RenderedDataset`` items (random token ids,
lengths log-normal around 22% of the 2,048-token trim with a tail up to it, roughly LIMA's spread; labels = the ids
with the prompt, 5-40% of each example, set to -100).

Parts, each in its own subprocess, so a crash, a CUDA error or a hang in one is reported as its ``error`` and the
others still run (a part gets its own time limit, capped by what is left of ``--budget-s``):

* ``throughput``: ``lima_align.train.trainer.build_trainer`` (as ``bench_train.py`` runs ours) trains the model on
  one GPU with the GPU defaults (bf16 weights, bf16 autocast) and the recipe's batch (32 examples, micro-batch 4,
  residual dropout 0.3): ``batching=auto`` (our default path; rebalance under sdpa) vs ``batching=padded``, same
  examples, same initial weights. Trained (non-padding) tokens/s is timed after ``warmup`` steps, GPU synchronised
  at every step end; MFU is computed from it.
* ``flash_packing`` (flash-attn installed): FlashAttention-2 varlen packing (``batching=auto`` with
  ``flash_attention_2`` resolves to packed) vs padded batches under sdpa, the same examples in every step, no
  dropout: the max abs difference of the per-step losses, beside padded FA2 vs padded sdpa (the kernels' own
  difference, the noise floor to read it against).
* ``fsdp2`` (>= 2 GPUs), ``zero3`` (>= 2 GPUs and DeepSpeed): ``torchrun --nproc-per-node N`` of this script with
  ``TrainConfig.strategy`` fsdp2 / zero3, the per-GPU batch as above (global batch x N); throughput and MFU.
* ``vllm`` (vllm installed): a small random checkpoint (hidden 768, 12 layers) saved and served by ``vllm.LLM``
  with no tokenizer; 64 token-id prompts, greedy, 256 new tokens each: generated tokens/s, and whether a second run
  gives the same tokens.

MFU = 6 x parameters x trained tokens/s / (GPUs x peak dense bf16 FLOP/s): the usual 6ND estimate with every
parameter (embeddings too) and no attention-score FLOPs. The peak is ``--peak-tflops`` or
``GPU_CHECK_PEAK_TFLOPS`` when given, else ``PEAK_BF16``'s by GPU name (none: MFU null). Without CUDA the GPU
parts are skipped with the reason, and ``--quick`` still trains the tiny model on CPU in fp32
(``mixed_precision="no"``). Exit code 1 when a part failed (the JSON is written either way), else 0.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import torch

try:  # the report must come out where transformers cannot be imported too: the parts then fail, saying why
    from transformers import TrainerCallback
except ImportError as exc:
    TrainerCallback, TRANSFORMERS_ERROR = object, f"{type(exc).__name__}: {exc}"
else:
    TRANSFORMERS_ERROR = None

SEED = 42
IGNORE = -100
# LlamaConfig shapes: "1b" is TinyLlama-1.1B's; "small" is what vLLM serves; "tiny" is --quick's
MODELS: dict[str, dict[str, int]] = {
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4, vocab_size=32000),
    "small": dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
                  num_key_value_heads=4, vocab_size=32000),
    "tiny": dict(hidden_size=128, intermediate_size=344, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=8000),
}
# dense bf16 tensor-core peaks (no sparsity) by device-name substring, first match wins
PEAK_BF16 = (("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12))
MFU_FORMULA = "mfu = 6 * parameters * trained_tokens_per_s / (gpus * peak_bf16_flops)"
PARTS = ("throughput", "flash_packing", "fsdp2", "zero3", "vllm")
DISTRIBUTED = ("fsdp2", "zero3")
LIMITS_S = {"throughput": 200, "flash_packing": 150, "fsdp2": 180, "zero3": 150, "vllm": 240}
PACKAGES = ("torch", "transformers", "accelerate", "peft", "flash-attn", "vllm", "deepspeed", "lima-align")
LOSS_TOLERANCE = 0.02  # per-step losses (~ln 32000 = 10.4) from bf16 activations: what "same loss" means here


@dataclass(frozen=True)
class Plan:
    """The sizes of one check: the GPU one, or ``--quick``."""

    model: str = "1b"
    steps: int = 16  # optimizer steps per training run
    warmup: int = 3  # steps left out of the timing (allocator, kernels' first calls)
    batch_size: int = 32  # examples per optimizer step per GPU
    micro_batch_size: int = 4
    max_len: int = 2048
    flash_steps: int = 6
    vllm_model: str = "small"
    vllm_prompts: int = 64
    vllm_tokens: int = 256


QUICK = Plan(model="tiny", steps=2, warmup=1, batch_size=8, micro_batch_size=4, max_len=128, flash_steps=2,
             vllm_model="tiny", vllm_prompts=4, vllm_tokens=16)


@dataclass
class SyntheticTokenizer:
    """All the Trainer asks of a tokenizer when the examples are token ids already (there is no vocabulary)."""

    pad_token_id: int = 0
    pad_token: str = "<pad>"
    model_input_names: tuple[str, ...] = ("input_ids", "attention_mask")

    def save_pretrained(self, folder: str) -> None:  # checkpoints are off: nothing to save
        pass


class CountingCollator:
    """Wraps a run's collator: real tokens and computed positions of every micro-batch."""

    def __init__(self, inner: Any):
        self.inner, self.batches = inner, []

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.inner(features)
        self.batches.append((sum(len(f["input_ids"]) for f in features), int(batch["input_ids"].numel())))
        return batch


class StepClock(TrainerCallback):
    """(time, tokens this process has trained) at the end of every optimizer step, once the GPU has finished it."""

    def __init__(self, trainer: Any):
        self.trainer, self.marks = trainer, []

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.marks.append((time.perf_counter(), self.trainer.trained_tokens))


def synthetic_examples(n: int, vocab: int, max_len: int, seed: int = SEED) -> list[dict[str, list[int]]]:
    """``n`` rendered-example stand-ins: random ids (0 is the pad id), variable lengths, the prompt unsupervised."""
    rng = random.Random(seed)
    median = max(16, round(max_len * 0.22))
    items = []
    for _ in range(n):
        length = min(max_len, max(16, round(rng.lognormvariate(math.log(median), 0.7))))
        prompt = max(1, round(length * rng.uniform(0.05, 0.4)))
        ids = [rng.randrange(1, vocab) for _ in range(length)]
        items.append({"input_ids": ids, "labels": [IGNORE] * prompt + ids[prompt:]})
    return items


def build_model(shape: str, attn: str, dtype: torch.dtype, device: str, seed: int = SEED) -> Any:
    """A random-weight Llama of ``MODELS[shape]``: the same weights for the same seed and device."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(seed)
    config = LlamaConfig(**MODELS[shape], max_position_embeddings=4096, tie_word_embeddings=False)
    with torch.device(device):  # initialised in place and in ``dtype``: no fp32 copy of 1.1B weights
        return AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)


def describe(model: Any, shape: str, precision: tuple[torch.dtype, str]) -> dict[str, Any]:
    params = sum(p.numel() for p in model.parameters())
    embeddings = model.get_input_embeddings().weight.numel() + model.get_output_embeddings().weight.numel()
    return {"shape": shape, **MODELS[shape], "parameters": params, "non_embedding_parameters": params - embeddings,
            "dtype": str(precision[0]).removeprefix("torch."), "mixed_precision": precision[1]}


def precision(cuda: bool) -> tuple[torch.dtype, str]:
    """GPU: bf16 weights + bf16 autocast (TrainConfig's auto); CPU and pre-Ampere: fp32, no autocast."""
    if cuda and torch.cuda.is_bf16_supported():
        return torch.bfloat16, "bf16"
    return torch.float32, "no"


def free_memory() -> None:
    """Collect what the last run left (a trainer and its callbacks refer to each other) before the next model."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def train_run(model: Any, items: list[dict[str, list[int]]], plan: Plan, world: int = 1,
              **overrides: Any) -> dict[str, Any]:
    """Train ``model`` for ``plan.steps`` optimizer steps on ``items`` (one epoch) with our trainer; what it saw."""
    # lima_align is imported by the parts only: the parent's report survives a host where it cannot be imported
    from transformers.trainer_callback import ProgressCallback

    from lima_align.train.config import TrainConfig
    from lima_align.train.data import RenderedDataset
    from lima_align.train.dropout import add_residual_dropout
    from lima_align.train.trainer import build_trainer

    dtype, mixed = precision(torch.cuda.is_available())
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as out:
        config = TrainConfig(model="random-llama", data="synthetic", out=out, epochs=1,
                             batch_size=plan.batch_size * world, micro_batch_size=plan.micro_batch_size,
                             dtype=str(dtype).removeprefix("torch."), mixed_precision=mixed, tensorboard=False,
                             logging_steps=1, seed=SEED, **overrides)
        add_residual_dropout(model, config.residual_dropout)  # what prepare() adds before build_trainer
        trainer = build_trainer(config, model, SyntheticTokenizer(), RenderedDataset(items), {})
        trainer.args.save_strategy, trainer.args.max_steps = "no", plan.steps
        trainer.remove_callback(ProgressCallback)
        trainer.data_collator = counter = CountingCollator(trainer.data_collator)
        clock = StepClock(trainer)
        trainer.add_callback(clock)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    (t0, k0), (t1, k1) = clock.marks[plan.warmup - 1], clock.marks[-1]
    real, positions = sum(r for r, _ in counter.batches), sum(p for _, p in counter.batches)
    tokens = [k for _, k in clock.marks]
    result = {"batching": config.batching, "resolved_batching": config.resolved_batching(),
              "attn_implementation": model.config._attn_implementation, "strategy": config.strategy,
              "residual_dropout": config.residual_dropout,
              "steps": trainer.state.global_step, "examples": len(items), "trained_tokens": trainer.trained_tokens,
              "padding_share": 1.0 - real / max(positions, 1), "step_tokens": [tokens[0]] + [
                  b - a for a, b in zip(tokens, tokens[1:])], "timed_steps": len(tokens) - plan.warmup,
              "timed_tokens": k1 - k0, "timed_seconds": t1 - t0, "tokens_per_s": (k1 - k0) / (t1 - t0),
              "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
              "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None}
    return result


def with_mfu(run: dict[str, Any], params: int, peak: float | None, gpus: int = 1) -> dict[str, Any]:
    flops = 6 * params * run["tokens_per_s"]
    return {**run, "model_tflops_per_s_per_gpu": flops / gpus / 1e12,
            "mfu": flops / (gpus * peak) if peak else None}


def part_throughput(plan: Plan, peak: float | None) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    device, prec = ("cuda" if cuda else "cpu"), precision(cuda)
    items = synthetic_examples(plan.steps * plan.batch_size, MODELS[plan.model]["vocab_size"], plan.max_len)
    runs, model_info = {}, {}
    for batching in ("auto", "padded"):
        model = build_model(plan.model, "sdpa", prec[0], device)
        model_info = describe(model, plan.model, prec)
        runs[batching] = with_mfu(train_run(model, items, plan, batching=batching), model_info["parameters"], peak)
        del model
        free_memory()
    return {"model": model_info, "runs": runs,
            "speedup_auto_over_padded": runs["auto"]["tokens_per_s"] / runs["padded"]["tokens_per_s"]}


def part_flash_packing(plan: Plan, peak: float | None) -> dict[str, Any]:
    import flash_attn

    prec = precision(True)
    short = replace(plan, steps=plan.flash_steps, warmup=min(plan.warmup, plan.flash_steps - 1))
    items = synthetic_examples(short.steps * plan.batch_size, MODELS[plan.model]["vocab_size"], plan.max_len)
    runs = {}
    for name, attn, batching in (("packed_fa2", "flash_attention_2", "auto"), ("padded_sdpa", "sdpa", "padded"),
                                 ("padded_fa2", "flash_attention_2", "padded")):
        model = build_model(plan.model, attn, prec[0], "cuda")
        params = sum(p.numel() for p in model.parameters())
        runs[name] = with_mfu(train_run(model, items, short, batching=batching, attn_implementation=attn,
                                        residual_dropout=0.0), params, peak)
        del model
        free_memory()

    def diff(a: str, b: str) -> float:
        return max(abs(x - y) for x, y in zip(runs[a]["losses"], runs[b]["losses"], strict=True))

    packed = diff("packed_fa2", "padded_sdpa")
    return {"flash_attn": flash_attn.__version__, "runs": runs, "max_abs_loss_diff_packed_vs_padded": packed,
            "max_abs_loss_diff_padded_fa2_vs_sdpa": diff("padded_fa2", "padded_sdpa"),
            "same_examples_per_step": runs["packed_fa2"]["step_tokens"] == runs["padded_sdpa"]["step_tokens"],
            "tolerance": LOSS_TOLERANCE, "agree": packed <= LOSS_TOLERANCE}


def part_distributed(plan: Plan, peak: float | None, strategy: str) -> dict[str, Any] | None:
    """One process of ``torchrun --nproc-per-node N``: every rank builds the same model on CPU, the trainer
    shards it; the result (tokens summed over ranks) comes from rank 0."""
    world, rank, cuda = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"]), torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    prec = precision(cuda)  # CPU (gloo) too, so the sharded path can be tried without GPUs
    model = build_model(plan.model, "sdpa", prec[0], "cpu")
    model_info = describe(model, plan.model, prec)
    items = synthetic_examples(plan.steps * plan.batch_size * world, MODELS[plan.model]["vocab_size"], plan.max_len)
    run = train_run(model, items, plan, world=world, strategy=strategy)
    totals = torch.tensor([run["trained_tokens"], run["timed_tokens"]], dtype=torch.float64,
                          device="cuda" if cuda else "cpu")
    torch.distributed.all_reduce(totals)
    # rank 0's clock, every rank's tokens (step_tokens and losses stay rank 0's)
    run.update(trained_tokens=int(totals[0]), timed_tokens=int(totals[1]),
               tokens_per_s=float(totals[1]) / run["timed_seconds"])
    if rank != 0:
        return None
    return {"model": model_info, "world_size": world, "global_batch": plan.batch_size * world,
            "run": with_mfu(run, model_info["parameters"], peak, gpus=world)}


def part_vllm(plan: Plan, peak: float | None) -> dict[str, Any]:
    from vllm import LLM, SamplingParams

    vocab = MODELS[plan.vllm_model]["vocab_size"]
    rng = random.Random(SEED)
    prompts = [{"prompt_token_ids": [rng.randrange(1, vocab) for _ in range(rng.randint(16, 256))]}
               for _ in range(plan.vllm_prompts)]
    params = SamplingParams(temperature=0.0, max_tokens=plan.vllm_tokens, ignore_eos=True, detokenize=False)
    with tempfile.TemporaryDirectory(prefix="gpu-check-vllm-") as folder:
        build_model(plan.vllm_model, "sdpa", torch.bfloat16, "cpu").save_pretrained(folder)
        start = time.perf_counter()
        llm = LLM(model=folder, skip_tokenizer_init=True, dtype="bfloat16", gpu_memory_utilization=0.5,
                  max_model_len=1024, seed=SEED)
        loaded = time.perf_counter()
        first = llm.generate(prompts, params, use_tqdm=False)
        seconds = time.perf_counter() - loaded
        second = llm.generate(prompts, params, use_tqdm=False)
        del llm
        free_memory()
    tokens = sum(len(out.outputs[0].token_ids) for out in first)
    same = [list(o.outputs[0].token_ids) for o in first] == [list(o.outputs[0].token_ids) for o in second]
    return {"model": {"shape": plan.vllm_model, **MODELS[plan.vllm_model]}, "prompts": len(prompts),
            "max_new_tokens": plan.vllm_tokens, "generated_tokens": tokens, "load_seconds": loaded - start,
            "generate_seconds": seconds, "tokens_per_s": tokens / seconds, "greedy_repeatable": same,
            "lima_engines": lima_engines(plan)}


def lima_engines(plan: Plan) -> dict[str, Any]:
    """Our two engines on the built-in SmolLM2 with LIMA sampling (vLLM with our penalty processor vs the HF
    engine), same requests: the tokens/s ratio the vLLM issue asks to measure on a GPU."""
    try:
        from lima_align.formats.rows import read_examples  # noqa: F401 - lima-align is in the bundle
        from lima_align.generate.decoding import SamplingConfig
        from lima_align.generate.engine import HFEngine, Request
        from lima_align.generate.engines import EngineOptions
        from lima_align.generate.loading import load_for_generation
        from lima_align.generate.vllm_engine import VLLMEngine
        from lima_align.models import resolve_model

        resolve_model("smollm2-135m-instruct")
    except Exception as exc:  # noqa: BLE001 - said in the result, the rest of the check goes on
        return {"skipped": f"{type(exc).__name__}: {exc}"}
    requests = [Request(f"p{i}", [f"Question {i}: explain one idea from physics in plain words."], s)
                for i in range(plan.vllm_prompts) for s in range(5)]
    config = SamplingConfig(max_new_tokens=plan.vllm_tokens)
    engine = VLLMEngine("smollm2-135m-instruct", EngineOptions(name="vllm", gpu_memory_utilization=0.5),
                        add_eot=True)
    start = time.perf_counter()
    vllm_tokens = sum(c.completion_tokens for c in engine.generate(requests, config))
    vllm_s = time.perf_counter() - start
    engine.close()
    lm, tokenizer, fmt = load_for_generation("smollm2-135m-instruct", add_eot=True)
    hf = HFEngine(lm, tokenizer, fmt, batch_size=64)
    start = time.perf_counter()
    hf_tokens = sum(c.completion_tokens for c in hf.generate(requests, config))
    hf_s = time.perf_counter() - start
    return {"requests": len(requests), "vllm_tokens_per_s": vllm_tokens / vllm_s,
            "hf_tokens_per_s": hf_tokens / hf_s, "ratio_vllm_over_hf": (vllm_tokens / vllm_s) / (hf_tokens / hf_s)}


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    gpus = []
    for index in range(torch.cuda.device_count() if cuda else 0):
        props = torch.cuda.get_device_properties(index)
        gpus.append({"index": index, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                     "capability": f"{props.major}.{props.minor}"})
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        smi = []
    return {"cuda": cuda, "gpus": gpus, "gpu_count": len(gpus), "driver": smi[0] if smi else None,
            "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
            "bf16": bool(cuda and torch.cuda.is_bf16_supported()), "python": platform.python_version(),
            "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "versions": {name: package_version(name) for name in PACKAGES},
            "transformers_import_error": TRANSFORMERS_ERROR,
            "importable": {module: find_spec(module) is not None for module in ("flash_attn", "vllm", "deepspeed")}}


def peak_flops(cli_tflops: float | None, gpus: list[dict[str, Any]]) -> dict[str, Any]:
    """The peak dense bf16 FLOP/s of one GPU, and where the number comes from."""
    given = cli_tflops or float(os.environ.get("GPU_CHECK_PEAK_TFLOPS") or 0)
    if given:
        return {"flops": given * 1e12, "source": "--peak-tflops" if cli_tflops else "GPU_CHECK_PEAK_TFLOPS"}
    name = gpus[0]["name"] if gpus else "no GPU"
    for key, flops in PEAK_BF16:
        if key in name:
            return {"flops": flops, "source": f"table: {key}"}
    return {"flops": None, "source": f"{name}: not in the table, pass --peak-tflops for MFU"}


def skip_reason(part: str, env: dict[str, Any], quick: bool) -> str | None:
    """Why ``part`` cannot run here (missing packages named first), or None."""
    reasons = []
    needs = {"flash_packing": ("flash_attn", "flash-attn not installed (pip install flash-attn)"),
             "zero3": ("deepspeed", "deepspeed not installed (pip install deepspeed)"),
             "vllm": ("vllm", "vllm not installed")}
    if part in needs and not env["importable"][needs[part][0]]:
        reasons.append(needs[part][1])
    if part in DISTRIBUTED and env["gpu_count"] < 2:
        reasons.append(f"fewer than 2 GPUs ({env['gpu_count']} visible): nothing to shard over")
    elif not env["cuda"] and not (part == "throughput" and quick):
        reasons.append("no CUDA device" + (": the 1.1B model is GPU-only (--quick trains a tiny model on CPU)"
                                           if part == "throughput" else ""))
    return "; ".join(reasons) or None


def run_part(part: str, args: argparse.Namespace, env: dict[str, Any], deadline: float) -> dict[str, Any]:
    """Run one part in a child process (torchrun for the sharded ones) under its time limit."""
    limit = min(LIMITS_S[part], deadline - time.monotonic())
    if limit < 30:
        return {"status": "skipped", "reason": f"time budget spent (--budget-s {args.budget_s})"}
    with tempfile.TemporaryDirectory(prefix="gpu-check-part-") as tmp:
        result_file = Path(tmp) / "result.json"
        script = [str(Path(__file__).resolve()), "--part", part, "--part-out", str(result_file), *forwarded(args)]
        child_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        if part in DISTRIBUTED:
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                       "--nproc-per-node", str(env["gpu_count"]), *script]
        else:
            command = [sys.executable, *script]
            if env["cuda"]:  # one process on many visible GPUs would make the Trainer use DataParallel
                child_env["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
        start = time.monotonic()
        returncode, log = run_child(command, child_env, limit)
        seconds = time.monotonic() - start
        result = json.loads(result_file.read_text()) if result_file.is_file() else {}
    if returncode == 0 and result.get("status") == "ok":
        return {**result, "seconds": seconds}
    error = result.get("error") or (f"timed out after {limit:.0f} s" if returncode is None
                                    else f"exit code {returncode}")
    return {"status": "error", "error": error, "seconds": seconds, "log_tail": log[-4000:]}


def run_child(command: list[str], env: dict[str, str], limit: float) -> tuple[int | None, str]:
    """Exit code (None: killed at ``limit`` seconds, with every process it started) and its output."""
    with tempfile.TemporaryFile("w+") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, text=True,
                                 start_new_session=True)
        try:
            returncode = child.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            returncode = None
        log.seek(0)
        return returncode, log.read()


def forwarded(args: argparse.Namespace) -> list[str]:
    flags = ["--quick"] if args.quick else []
    for name in ("steps", "peak_tflops", "threads"):
        if getattr(args, name) is not None:
            flags += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return flags


def plan_for(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else Plan()
    if args.steps is not None:
        plan = replace(plan, steps=args.steps, warmup=min(plan.warmup, args.steps - 1))
    if plan.warmup < 1:
        raise SystemExit("--steps must be >= 2 (the first step is left out of the timing)")
    return plan


def child_main(args: argparse.Namespace) -> int:
    """``--part NAME``: run one part in this process, write its result (or its error) to ``--part-out``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    plan = plan_for(args)
    gpus = environment()["gpus"]
    peak = peak_flops(args.peak_tflops, gpus)["flops"]
    try:
        if args.part in DISTRIBUTED:
            result = part_distributed(plan, peak, args.part)
        else:
            result = {"throughput": part_throughput, "flash_packing": part_flash_packing,
                      "vllm": part_vllm}[args.part](plan, peak)
        outcome, code = ({"status": "ok", **result} if result is not None else None), 0
    except Exception:  # reported in the JSON: the parent goes on with the other parts
        outcome, code = {"status": "error", "error": traceback.format_exc()[-4000:]}, 1
    if outcome is not None:
        Path(args.part_out).write_text(json.dumps(outcome))
    return code


def summary_line(part: str, result: dict[str, Any]) -> str:
    if result["status"] != "ok":
        return f"{part:14} {result['status']}: {(result.get('reason') or result.get('error', '')).splitlines()[-1]}"
    if part == "throughput":
        auto, padded = result["runs"]["auto"], result["runs"]["padded"]
        mfu = f"{auto['mfu']:.1%}" if auto["mfu"] is not None else "n/a: no peak FLOPs"
        return (f"{part:14} auto {auto['tokens_per_s']:.0f} tok/s (MFU {mfu}), padded "
                f"{padded['tokens_per_s']:.0f} tok/s: {result['speedup_auto_over_padded']:.2f}x")
    if part == "flash_packing":
        return (f"{part:14} max |loss diff| packed vs padded {result['max_abs_loss_diff_packed_vs_padded']:.2e} "
                f"(fa2 vs sdpa padded {result['max_abs_loss_diff_padded_fa2_vs_sdpa']:.2e})")
    if part in DISTRIBUTED:
        return f"{part:14} {result['world_size']} GPUs: {result['run']['tokens_per_s']:.0f} tok/s"
    return f"{part:14} {result['tokens_per_s']:.0f} generated tok/s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu-check.json")
    parser.add_argument("--quick", action="store_true", help="tiny model, 2 steps (a smoke run; CPU too)")
    parser.add_argument("--peak-tflops", type=float, help="peak dense bf16 TFLOP/s of one GPU (MFU)")
    parser.add_argument("--steps", type=int, help="optimizer steps per training run (default 16; --quick 2)")
    parser.add_argument("--budget-s", type=float, default=420, help="wall-clock budget for all parts")
    parser.add_argument("--threads", type=int, help="torch CPU threads in the parts")
    parser.add_argument("--only", nargs="+", choices=PARTS, help="run only these parts")
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--part-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        return child_main(args)
    started, deadline = time.monotonic(), time.monotonic() + args.budget_s
    env = environment()
    report: dict[str, Any] = {
        "check": "lima-align gpu_check", "version": 1, "started_utc": datetime.now(timezone.utc).isoformat(),
        "quick": args.quick, "cuda": env["cuda"], "plan": asdict(plan_for(args)), "environment": env,
        "peak_bf16": peak_flops(args.peak_tflops, env["gpus"]), "mfu_formula": MFU_FORMULA,
        "parts": {}, "skipped": [], "errors": []}
    print(f"gpu_check: {env['gpu_count']} GPU(s) {[g['name'] for g in env['gpus']]}, torch "
          f"{env['versions']['torch']}, writing {args.out}", flush=True)
    for part in args.only or PARTS:
        reason = skip_reason(part, env, args.quick)
        result = {"status": "skipped", "reason": reason} if reason else run_part(part, args, env, deadline)
        report["parts"][part] = result
        if result["status"] == "skipped":
            report["skipped"].append({"part": part, "reason": result["reason"]})
        elif result["status"] == "error":
            report["errors"].append({"part": part, "error": result["error"]})
        report["seconds"] = time.monotonic() - started
        Path(args.out).write_text(json.dumps(report, indent=2))  # after every part: a later hang loses nothing
        print(summary_line(part, result), flush=True)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
