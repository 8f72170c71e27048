"""How the processes of a run share the model: DDP replicas, FSDP2 shards or DeepSpeed ZeRO-3 partitions.

``TrainConfig.strategy`` picks one. ``auto`` leaves it to the launcher: ``accelerate launch --config_file
configs/accelerate/fsdp2.yaml`` (or ``zero3.yaml``) tells every process through environment variables, and the
Trainer's accelerator reads them. ``fsdp2`` / ``zero3`` pass the same settings as those shipped files through the
Trainer's own arguments (``fsdp`` + ``fsdp_config``, ``deepspeed``), so a plain ``torchrun`` works too. The shipped
files and the dictionaries here are checked against each other by ``tests/test_shipped_configs.py``.

Two things accelerate does not do for us:

* on CPU processes (gloo) accelerate silently drops its FSDP plugin and trains with DDP, although torch's
  ``fully_shard`` runs there: :func:`enable_fsdp_on_cpu` turns it back on, so that CPU tests run the exact code
  path a GPU run takes (sharding, DCP checkpoints, the full-state-dict export);
* with a SHARDED state dict, FSDP checkpoints hold only per-rank shards. :func:`export_full_weights` gathers the
  full weights to rank 0's CPU memory and writes them as safetensors (``from_pretrained`` loads the folder).
"""

from __future__ import annotations

import os
from typing import Any

from lima_align.errors import LimaError
from lima_align.train.config import TrainConfig

# TrainingArguments.fsdp_config: the settings of configs/accelerate/fsdp2.yaml (without its ``fsdp_`` prefixes).
# No transformer_layer_cls_to_wrap: accelerate then wraps the model's own _no_split_modules (its decoder layer).
FSDP2_CONFIG: dict[str, Any] = {
    "version": 2,
    "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
    "reshard_after_forward": True,
    "state_dict_type": "SHARDED_STATE_DICT",
    "cpu_ram_efficient_loading": True,
    "offload_params": False,
    "activation_checkpointing": False,
}

# TrainingArguments.deepspeed: configs/accelerate/zero3.json. "auto" values are filled in by the Trainer from our
# TrainingArguments (batch sizes, clipping, bf16), so the recipe stays in TrainConfig.
ZERO3_CONFIG: dict[str, Any] = {
    "zero_optimization": {
        "stage": 3,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
        "stage3_prefetch_bucket_size": "auto",
        "stage3_param_persistence_threshold": "auto",
        "stage3_gather_16bit_weights_on_model_save": True,
        "offload_optimizer": {"device": "none"},
        "offload_param": {"device": "none"},
    },
    "bf16": {"enabled": "auto"},
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
}


def launcher_strategy() -> str | None:
    """What an ``accelerate launch`` config asked for ("fsdp2", "fsdp1", "zero3"), or None (torchrun, one process)."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return "zero3" if os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3") == "3" else "deepspeed"
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return "fsdp2" if os.environ.get("FSDP_VERSION", "1") == "2" else "fsdp1"
    return None


def resolved_strategy(config: TrainConfig, world_size: int) -> str:
    """The strategy a run uses: the config's, or the launcher's for ``auto`` (DDP when neither says)."""
    launcher = launcher_strategy()
    if config.strategy == "auto":
        return launcher or "ddp"
    if launcher is not None and launcher != config.strategy:
        raise LimaError(f"strategy={config.strategy} but the launcher's accelerate config asks for {launcher}: "
                        "drop one of them (strategy=auto follows the launcher)")
    if config.strategy in ("fsdp2", "zero3") and world_size < 2 and launcher is None:
        raise LimaError(f"strategy={config.strategy} shards the model over processes: launch 2 or more "
                        "(torchrun --nproc_per_node N -m lima_align.train ..., or accelerate launch)")
    return config.strategy


def check_supported(config: TrainConfig, model: Any, world_size: int) -> None:
    """Refuse, with the reason, a combination that fails deep inside accelerate/torch otherwise."""
    strategy = resolved_strategy(config, world_size)
    if config.new_token_lr is not None and strategy != "ddp":
        raise LimaError(f"new_token_lr works with strategy=ddp or one process, not {strategy}: the EOT rows of a "
                        "sharded embedding live on one shard (set new_token_lr: null)")
    if not config.lora.enabled or strategy != "fsdp2":
        return
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "tie_word_embeddings", False):
        raise LimaError("LoRA under FSDP2 with tied embeddings does not run (accelerate 1.15 + peft 0.21): peft "
                        "wraps the tied embedding/head to train the EOT row, and accelerate's sharding of that "
                        "pair then fails (tie_weights on the wrapped names; a shared parameter sharded twice). "
                        "LoRA's weights fit one GPU: use strategy=ddp, or zero3")


def strategy_arguments(config: TrainConfig, world_size: int) -> dict[str, Any]:
    """TrainingArguments keyword arguments for the strategy (empty when the launcher configures it)."""
    strategy = resolved_strategy(config, world_size)  # raises on a contradiction
    if config.strategy == "auto" or launcher_strategy() is not None or strategy == "ddp":
        return {}
    if config.strategy == "fsdp2":
        # FSDP's own activation checkpointing instead of the model's (Trainer refuses both at once)
        return {"fsdp": True, "fsdp_config": {**FSDP2_CONFIG,
                                              "activation_checkpointing": config.gradient_checkpointing}}
    try:
        import deepspeed  # noqa: F401
    except ImportError as exc:
        raise LimaError("strategy=zero3 needs DeepSpeed: pip install deepspeed") from exc
    return {"deepspeed": ZERO3_CONFIG}


def enable_fsdp_on_cpu(trainer: Any) -> bool:
    """Turn the FSDP plugin back on where accelerate dropped it because the processes run on CPU (gloo).

    accelerate only switches its state to FSDP for GPU-like distributed types; torch's FSDP2 itself runs on CPU.
    The plugin comes from the Trainer's arguments (``strategy: fsdp2``) or from the launcher's environment
    (``accelerate launch --config_file configs/accelerate/fsdp2.yaml``), exactly as on a GPU. Returns whether it
    switched.
    """
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = trainer.accelerator.state
    plugin_args = trainer.args.fsdp_plugin_args
    wanted = plugin_args is not None or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if trainer.is_fsdp_enabled or not wanted or state.distributed_type != DistributedType.MULTI_CPU:
        return False
    plugin = FullyShardedDataParallelPlugin(**plugin_args) if plugin_args else FullyShardedDataParallelPlugin()
    if trainer.accelerator.mixed_precision != "no":
        plugin.set_mixed_precision(trainer.accelerator.mixed_precision)
    # both shared states, as accelerate does on GPUs: every AcceleratorState() re-reads PartialState's
    state.distributed_type = PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    state.fsdp_plugin = plugin
    trainer.is_fsdp_enabled = True
    return True


def has_sharded_checkpoints(trainer: Any) -> bool:
    """Whether the Trainer's checkpoints hold FSDP shards instead of full weights."""
    if not trainer.is_fsdp_enabled:
        return False
    return "SHARDED_STATE_DICT" in str(trainer.accelerator.state.fsdp_plugin.state_dict_type)


def export_full_weights(trainer: Any, folder: str) -> None:
    """Write the full weights (safetensors), config and tokenizer into ``folder``; every process must call it.

    The shards are gathered to rank 0's CPU memory (not its GPU: a 65B bf16 model is 130 GB) and written there.
    Tied parameters come back from the gather as separate tensors, so only one name of each is written (the one
    ``from_pretrained`` expects; it ties the others again).
    """
    state_dict = trainer.accelerator.get_state_dict(trainer.model)
    for name in tied_duplicates(trainer.model):
        state_dict.pop(name, None)
    trainer._save(folder, state_dict=state_dict)


def tied_duplicates(model: Any) -> list[str]:
    """Names of parameters that are another, earlier-named parameter (e.g. ``lm_head.weight`` when tied)."""
    first: dict[int, str] = {}
    duplicates = []
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            duplicates.append(name)
        else:
            first[id(param)] = name
    return duplicates
