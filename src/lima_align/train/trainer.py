"""The LIMA fine-tuning run on transformers' Trainer (one CPU to many GPUs/nodes through accelerate).

What we add to Trainer, through its own seams rather than a loop of our own:

* ``compute_loss``: the chunked LM-head loss (:mod:`lima_align.train.loss`), summed over supervised tokens and
  divided by Trainer's ``num_items_in_batch`` (the supervised tokens of the WHOLE accumulated batch, summed over
  processes), so 1 x 32 and 4 x 8 accumulation give the same gradients;
* ``create_scheduler``: no warmup, linear decay from ``lr`` to ``lr_end`` at the last optimizer step;
* callbacks: per-epoch checkpoint completion markers (after the run info and chat format), NaN/spike stop,
  SIGTERM save-and-stop; ``save_model`` also writes the chat format beside a model saved outside checkpoints;
* ``log``: trained (non-padding) tokens per second, summed over processes;
* ``create_accelerator_and_postprocess`` / ``_save_checkpoint``: FSDP on CPU processes too, and full safetensors
  weights in the checkpoints that keep them when FSDP saves shards (:mod:`lima_align.train.sharding`);
* ``_get_train_sampler``: transformers' ``BatchRebalanceSampler`` (``batching: rebalance``) seeded with the run's
  data seed (transformers leaves it at 42). It shuffles the examples into optimizer steps exactly like a random
  sampler would pick a step's examples, then sorts each step's examples by length into micro-batches of balanced
  cost: a step's gradient is unchanged (the loss is normalised over the whole step) while padding nearly vanishes.

Mixed precision is Trainer's ``bf16`` autocast (weights and optimizer state stay as loaded: fp32 on CPU).

The optimizer is Trainer's AdamW with the recipe's betas and weight decay (bias and norm weights not decayed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_pt_utils import BatchRebalanceSampler

from lima_align.chat_format import PAD_TOKEN, ChatFormat, eot_token_id, save_chat_format
from lima_align.config import to_dict
from lima_align.errors import LimaError
from lima_align.train.callbacks import AnomalyCallback, NewTokenLrCallback, SigtermCallback
from lima_align.train.checkpoint import (CheckpointCallback, CheckpointPolicy, complete_checkpoints,
                                        last_complete_checkpoint)
from lima_align.train.collate import make_collator
from lima_align.train.data import RenderedDataset
from lima_align.train.loss import lm_loss_sum
from lima_align.train.config import TrainConfig
from lima_align.train.sharding import (check_supported, enable_fsdp_on_cpu, export_full_weights,
                                       has_sharded_checkpoints, strategy_arguments)


class LinearToMin:
    """LR multiplier: 1.0 at the first optimizer step, ``end_ratio`` at the last one, linear in between."""

    def __init__(self, total_steps: int, end_ratio: float):
        self.total_steps, self.end_ratio = total_steps, end_ratio

    def __call__(self, step: int) -> float:
        progress = min(step, self.total_steps - 1) / max(1, self.total_steps - 1)
        return 1.0 - (1.0 - self.end_ratio) * progress


class LimaTrainer(Trainer):
    """Trainer with the token-normalised chunked loss, the LIMA LR schedule and a tokens/s counter."""

    def __init__(self, *args: Any, chat_format: ChatFormat = ChatFormat(), loss_chunk: int = 4096,
                 lr_end_ratio: float = 0.1, policy: CheckpointPolicy = CheckpointPolicy(), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.chat_format = chat_format
        self.policy = policy
        self.loss_chunk = loss_chunk
        self.lr_end_ratio = lr_end_ratio
        # our compute_loss normalises by num_items_in_batch itself: make Trainer count it and not rescale by GA
        self.model_accepts_loss_kwargs = True
        self.trained_tokens = 0
        self._last_log = (0, time.perf_counter())

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss_sum, n = lm_loss_sum(model, inputs, self.loss_chunk)
        self.trained_tokens += _real_tokens(inputs)
        denominator = num_items_in_batch if num_items_in_batch is not None else max(n, 1)
        loss = loss_sum / denominator
        if (self.args.average_tokens_across_devices and num_items_in_batch is not None
                and self.accelerator.num_processes > 1):
            loss = loss * self.accelerator.num_processes  # DDP averages gradients over processes
        return (loss, None) if return_outputs else loss

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        enable_fsdp_on_cpu(self)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        last = self.state.global_step >= self.state.max_steps
        if has_sharded_checkpoints(self) and self.policy.keeps_weights(self.state.epoch, last=last):
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            export_full_weights(self, str(folder))

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        # checkpoints get theirs from CheckpointCallback (before the completion marker)
        if not _internal_call and self.args.should_save:
            save_chat_format(self.chat_format, output_dir or self.args.output_dir)

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, BatchRebalanceSampler):
            sampler.seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            self._rebalance = sampler
        return sampler

    def _run_epoch(self, *args: Any, **kwargs: Any) -> Any:
        # the epoch's shuffle must follow the epoch even when a resumed loader is wrapped (skip_first_batches
        # under DDP) so deeply that Trainer's own set_epoch does not reach the sampler
        sampler = getattr(self, "_rebalance", None)
        if sampler is not None and "epoch" in kwargs:
            sampler.set_epoch(kwargs["epoch"])
        return super()._run_epoch(*args, **kwargs)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if self.lr_scheduler is None:
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer or self.optimizer, LinearToMin(num_training_steps, self.lr_end_ratio))
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # training logs happen on every process at once, so the count can be gathered
            tokens, then = self._last_log
            now, seen = time.perf_counter(), self._trained_tokens_all_processes()
            if now > then:
                logs["tokens_per_s"] = round((seen - tokens) / (now - then), 1)
            self._last_log = (seen, now)
        super().log(logs, start_time)

    def _trained_tokens_all_processes(self) -> int:
        """Tokens trained so far by all processes (each one only counts its own micro-batches)."""
        if self.accelerator.num_processes == 1:
            return self.trained_tokens
        count = torch.tensor([self.trained_tokens], device=self.args.device)
        return int(self.accelerator.gather(count).sum())


def _real_tokens(inputs: dict[str, torch.Tensor]) -> int:
    mask = inputs.get("attention_mask")
    return int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())


def training_arguments(config: TrainConfig, world_size: int = 1) -> TrainingArguments:
    """TrainingArguments for the recipe: AdamW(0.9, 0.95, wd 0.1), no warmup, per-epoch checkpoints."""
    on_gpu = torch.cuda.is_available()
    arguments = TrainingArguments(
        output_dir=config.out, num_train_epochs=config.epochs,
        per_device_train_batch_size=config.micro_batch_size,
        gradient_accumulation_steps=config.accumulation_steps(world_size),
        learning_rate=config.lr, weight_decay=config.weight_decay, adam_beta1=config.beta1,
        adam_beta2=config.beta2, max_grad_norm=config.max_grad_norm, warmup_steps=0,
        optim="adamw_torch", seed=config.seed, data_seed=config.seed,
        save_strategy="epoch",  # save_total_limit: CheckpointPolicy rotates, by step
        logging_steps=config.logging_steps, logging_first_step=True,
        report_to=report_targets(config),
        remove_unused_columns=False, dataloader_num_workers=0, average_tokens_across_devices=True,
        **_memory_arguments(config, world_size),
        train_sampling_strategy="batch_rebalance" if config.resolved_batching() == "rebalance" else "random",
        bf16=config.resolved_mixed_precision() == "bf16", use_cpu=not on_gpu,
    )
    # without bf16/fp16, TrainingArguments takes an accelerate launcher's mixed_precision (its config file's):
    # the run's own config decides, whatever launched it
    arguments.mixed_precision = config.resolved_mixed_precision()
    return arguments


def _memory_arguments(config: TrainConfig, world_size: int) -> dict[str, Any]:
    """The sharding strategy's arguments, and gradient checkpointing (FSDP2's own when the strategy is fsdp2)."""
    sharding = strategy_arguments(config, world_size)
    if config.gradient_checkpointing and "fsdp" not in sharding:
        sharding["gradient_checkpointing"] = True
    return sharding


def report_targets(config: TrainConfig) -> list[str] | str:
    """Where training logs go: tensorboard (when installed and not turned off) and ``config.report_to``, each a
    name transformers knows and whose package is installed (refused before training otherwise)."""
    from transformers.integrations.integration_utils import (INTEGRATION_TO_CALLBACK,
                                                             get_available_reporting_integrations)

    unknown = [t for t in config.report_to if t not in INTEGRATION_TO_CALLBACK]
    if unknown:
        raise LimaError(f"report_to: unknown {', '.join(unknown)}; transformers reports to "
                        f"{', '.join(sorted(INTEGRATION_TO_CALLBACK))}")
    missing = [t for t in config.report_to if t not in get_available_reporting_integrations()]
    if missing:
        raise LimaError(f"report_to: {', '.join(missing)} not installed (pip install {' '.join(missing)})")
    targets = (["tensorboard"] if config.tensorboard and _has_tensorboard() else []) + config.report_to
    return list(dict.fromkeys(targets)) or "none"


def _has_tensorboard() -> bool:
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class TrainResult:
    """What a run produced."""

    out: Path
    checkpoints: list[Path]
    global_step: int
    train_loss: float | None
    interrupted: bool = False
    log_history: list[dict[str, Any]] = field(default_factory=list)


def build_trainer(config: TrainConfig, model: Any, tokenizer: Any, dataset: RenderedDataset,
                  run_info: dict[str, Any], callbacks: Sequence[Any] = ()) -> LimaTrainer:
    """The Trainer for a prepared model, tokenizer and rendered dataset."""
    world_size = max(1, int(__import__("os").environ.get("WORLD_SIZE", "1")))
    if world_size == 1 and torch.cuda.device_count() > 1:  # Trainer would use DataParallel: batch x GPUs
        raise LimaError(f"{torch.cuda.device_count()} GPUs are visible to one process: launch one process per GPU "
                        "(accelerate launch -m lima_align.train ... / torchrun), or pick one GPU with "
                        "CUDA_VISIBLE_DEVICES=0")
    check_supported(config, model, world_size)
    flash = config.attn_implementation == "flash_attention_2"
    policy = CheckpointPolicy(config.kept_epochs(), config.save_total_limit)
    trainer_callbacks = [CheckpointCallback(run_info, config.chat, policy), SigtermCallback(),
                         AnomalyCallback(config.spike_factor, stop=config.anomaly == "stop"), *callbacks]
    if config.new_token_lr is not None:
        added = [eot_token_id(tokenizer, config.chat)] + ([tokenizer.pad_token_id]
                                                          if tokenizer.pad_token == PAD_TOKEN else [])
        trainer_callbacks.append(NewTokenLrCallback(added, config.new_token_lr, config.lr))
    return LimaTrainer(
        model=model, args=training_arguments(config, world_size), train_dataset=dataset,
        data_collator=make_collator(config.resolved_batching() == "packed", tokenizer.pad_token_id,
                                    flash_kwargs=flash),
        processing_class=tokenizer, callbacks=trainer_callbacks,
        chat_format=config.chat, loss_chunk=config.loss_chunk, lr_end_ratio=config.lr_end / config.lr,
        policy=policy,
    )


def run_trainer(trainer: LimaTrainer, config: TrainConfig, resume: bool) -> TrainResult:
    """Train (from the last complete checkpoint when ``resume``) and summarise."""
    checkpoint = last_complete_checkpoint(config.out) if resume else None
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    sigterm = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, SigtermCallback))
    return TrainResult(out=Path(config.out), checkpoints=complete_checkpoints(config.out),
                       global_step=trainer.state.global_step, train_loss=output.training_loss,
                       interrupted=sigterm.received, log_history=list(trainer.state.log_history))


def run_info(config: TrainConfig, data_report: dict[str, Any]) -> dict[str, Any]:
    """What is saved beside every checkpoint (versions are added at save time)."""
    return {"config": to_dict(config), "data": data_report}
