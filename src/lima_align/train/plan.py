"""The memory and disk a run needs, from the model's config alone (no weights): ``lima-align train --plan``.

Per device, for DDP (a full replica per GPU), FSDP2 and ZeRO-3 (parameters, gradients and optimizer state
sharded over all GPUs) and LoRA (frozen base + adapters, replicated):

* weights, gradients and AdamW's two moments, in the bytes per parameter each strategy really keeps. On GPUs the
  weights are loaded in bf16 and autocast computes in bf16. DDP and LoRA then keep everything in bf16 (8 bytes per
  parameter); FSDP2 (accelerate upcasts trainable parameters to fp32 when mixed precision is on) and ZeRO-3 (fp32
  master weights in its optimizer) keep 16 bytes per parameter, sharded, plus the bf16 copies of the layers being
  computed;
* activations of one micro-batch of ``micro_batch_size`` x ``max_len`` tokens: what a Llama-style decoder layer
  saves for backward (``7 h + 2 kv + 4 i`` values per token: norms, q/k/v, attention output, the SwiGLU MLP), with
  gradient checkpointing only each layer's input plus one layer recomputed; plus the LM-head chunk of the loss
  (``loss_chunk`` x vocabulary fp32 logits, their log-softmax and gradients: 16 bytes each).

The estimate is checked against the peak measured on CPU for a small model (``tests/train/test_plan.py``). It
leaves out the CUDA context and allocator fragmentation (count 1-3 GB per GPU).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

GB = 1024 ** 3
STRATEGIES = ("ddp", "fsdp2", "zero3", "lora")

# LLaMA-1 shapes (Touvron et al. 2023, table 2), so that the paper's models plan offline: name -> LlamaConfig keys
LLAMA_SHAPES: dict[str, dict[str, int]] = {
    "llama-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32),
    "llama-13b": dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40),
    "llama-33b": dict(hidden_size=6656, intermediate_size=17920, num_hidden_layers=60, num_attention_heads=52),
    "llama-65b": dict(hidden_size=8192, intermediate_size=22016, num_hidden_layers=80, num_attention_heads=64),
}


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs to know about a model: parameter counts and the sizes activations scale with."""

    name: str
    params: int  # unique parameters (a tied head counted once)
    layer_params: int  # one decoder layer
    lora_params_per_rank: int  # LoRA adapter parameters at r=1 on every linear layer of the decoder layers
    layers: int
    hidden: int
    intermediate: int
    kv_dim: int
    vocab: int


@dataclass(frozen=True)
class PlanSetup:
    """The run being planned: strategy, devices and the TrainConfig values memory depends on."""

    strategy: str = "fsdp2"
    gpus: int = 8  # devices in all (nodes x GPUs per node)
    gpu_memory_gb: float = 80.0
    micro_batch_size: int = 1
    seq_len: int = 2048
    gradient_checkpointing: bool = True
    loss_chunk: int = 4096
    lora_r: int = 16
    weight_bytes: int = 2  # 2: bf16 weights (GPU default), 4: fp32 (CPU)
    mixed_precision: bool = True  # bf16 autocast
    residual_dropout: bool = True
    offload_optimizer: bool = False  # ZeRO-3 "offload_optimizer": {"device": "cpu"}: fp32 master + moments in RAM


def model_config(name: str, config_json: str | None = None) -> Any:
    """A model's transformers config without its weights: ``config_json``, a built-in LLaMA shape
    (``llama-7b`` ... ``llama-65b``, also as ``huggyllama/llama-65b``), a built-in model or local folder, or a hub
    id (downloads config.json only)."""
    from transformers import AutoConfig, LlamaConfig

    if config_json:
        values = json.loads(Path(config_json).read_text(encoding="utf-8"))
        return AutoConfig.for_model(values.pop("model_type", "llama"), **values)
    shape = LLAMA_SHAPES.get(name.rsplit("/", 1)[-1].lower())
    if shape is not None:
        return LlamaConfig(**shape, vocab_size=32000, max_position_embeddings=2048, tie_word_embeddings=False)
    from lima_align.models import resolve_model

    return AutoConfig.from_pretrained(resolve_model(name))


def model_shape(config: Any, name: str = "") -> ModelShape:
    """Exact parameter counts by building the model on the meta device (no memory, any architecture)."""
    import torch
    from transformers import AutoModelForCausalLM

    from lima_align.train.dropout import decoder_layers

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    layers = decoder_layers(model)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    linears = [m for m in layers[0].modules() if isinstance(m, torch.nn.Linear)]
    return ModelShape(
        name=name or getattr(config, "_name_or_path", "") or config.model_type,
        params=sum(p.numel() for p in model.parameters()),
        layer_params=sum(p.numel() for p in layers[0].parameters()),
        lora_params_per_rank=len(layers) * sum(m.in_features + m.out_features for m in linears),
        layers=len(layers), hidden=text.hidden_size,
        intermediate=getattr(text, "intermediate_size", None) or 4 * text.hidden_size,
        kv_dim=kv_heads * head_dim, vocab=text.vocab_size,
    )


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per device, by part."""

    setup: PlanSetup
    weights: float
    gradients: float
    optimizer: float
    gathered: float  # layers gathered for compute (sharded strategies)
    activations: float
    activations_no_checkpointing: float
    activations_checkpointing: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.gathered + self.activations

    @property
    def fits(self) -> bool:
        return self.total <= self.setup.gpu_memory_gb * GB


def plan_memory(shape: ModelShape, setup: PlanSetup) -> MemoryPlan:
    """Memory per device for ``setup`` (see the module docstring for what each part holds)."""
    weights, gradients, optimizer, gathered = _state_bytes(shape, setup)
    no_ckpt = activation_bytes(shape, replace(setup, gradient_checkpointing=False))
    ckpt = activation_bytes(shape, replace(setup, gradient_checkpointing=True))
    return MemoryPlan(setup, weights, gradients, optimizer, gathered,
                      ckpt if setup.gradient_checkpointing else no_ckpt, no_ckpt, ckpt)


def _state_bytes(shape: ModelShape, setup: PlanSetup) -> tuple[float, float, float, float]:
    w = setup.weight_bytes
    n = shape.params
    if setup.strategy == "lora":
        adapters = shape.lora_params_per_rank * setup.lora_r
        return n * w + adapters * w, adapters * w, 2 * adapters * w, 0.0
    if setup.strategy == "ddp":
        return n * w, n * w, 2 * n * w, 0.0
    # sharded: fp32 master weights under bf16 mixed precision (FSDP2 upcasts, ZeRO-3 keeps fp32 partitions)
    master = 4 if setup.mixed_precision else w
    compute = 2 if setup.mixed_precision else w
    shards = setup.gpus
    gathered = 2 * shape.layer_params * compute + _unsharded_head(shape) * compute  # prefetch: 2 layers + head
    if setup.strategy == "zero3" and setup.mixed_precision:  # bf16 partition for compute + fp32 master
        if setup.offload_optimizer:  # master weights and moments live in CPU RAM
            return n * 2 / shards, n * 2 / shards, 0.0, gathered
        return n * (2 + master) / shards, n * 2 / shards, 2 * n * 4 / shards, gathered
    return n * master / shards, n * master / shards, 2 * n * master / shards, gathered


def _unsharded_head(shape: ModelShape) -> int:
    return shape.vocab * shape.hidden


def activation_bytes(shape: ModelShape, setup: PlanSetup) -> float:
    """Activations saved for backward for one micro-batch, plus the loss's LM-head chunk."""
    act = 2 if setup.mixed_precision else setup.weight_bytes
    tokens = setup.micro_batch_size * setup.seq_len
    per_token_layer = (7 * shape.hidden + 2 * shape.kv_dim + 4 * shape.intermediate) * act
    if setup.residual_dropout:
        per_token_layer += 2 * shape.hidden  # two boolean masks per layer
    if setup.gradient_checkpointing:
        layers = shape.layers * shape.hidden * act + per_token_layer
    else:
        layers = shape.layers * per_token_layer
    chunk = min(setup.loss_chunk or tokens, tokens)
    head = tokens * shape.hidden * act + chunk * shape.vocab * 16
    return tokens * layers + head


def checkpoint_disk(weights_bytes: float, resume_bytes: float, kept: int) -> dict[str, float]:
    """Disk for a run's checkpoints: ``kept`` checkpoints with weights + the newest one's resume state (optimizer
    moments, and under FSDP2 its sharded copy of the weights). While a checkpoint is written, the previous one's
    resume state still exists: the peak."""
    total = kept * weights_bytes + resume_bytes
    return {"weights": weights_bytes, "kept": kept, "resume_state": resume_bytes, "total": total,
            "peak": total + weights_bytes + resume_bytes}


def format_disk(disk: dict[str, float]) -> str:
    return (f"checkpoints: {disk['kept']} kept with weights x {disk['weights'] / GB:.2f} GB + the newest one's "
            f"resume state {disk['resume_state'] / GB:.2f} GB = {disk['total'] / GB:.2f} GB at the end; up to "
            f"{disk['peak'] / GB:.2f} GB while a checkpoint is written")


def plan_disk(shape: ModelShape, setup: PlanSetup, epochs: int, kept: int) -> dict[str, float]:
    """:func:`checkpoint_disk` for a planned run (weights saved in their loaded dtype)."""
    trainable = shape.lora_params_per_rank * setup.lora_r if setup.strategy == "lora" else shape.params
    weights = trainable * setup.weight_bytes
    master = 4 if setup.strategy in ("fsdp2", "zero3") and setup.mixed_precision else setup.weight_bytes
    sharded_copy = shape.params * master if setup.strategy in ("fsdp2", "zero3") else 0
    return checkpoint_disk(weights, 2 * trainable * master + sharded_copy, min(kept, epochs))


def format_plan(shape: ModelShape, plans: list[MemoryPlan], launch: dict[str, str]) -> str:
    """The printed plan: one block per strategy."""
    lines = [f"model {shape.name}: {shape.params / 1e9:.2f}B parameters, {shape.layers} layers, hidden "
             f"{shape.hidden}, vocabulary {shape.vocab}"]
    for plan in plans:
        s = plan.setup
        lines += [
            f"\n{s.strategy} on {s.gpus} GPU(s) of {s.gpu_memory_gb:g} GB, micro-batch {s.micro_batch_size} x "
            f"{s.seq_len} tokens: {plan.total / GB:.1f} GB per GPU -> {'fits' if plan.fits else 'does NOT fit'}",
            f"  weights {plan.weights / GB:.1f} GB, gradients {plan.gradients / GB:.1f} GB, optimizer "
            f"{plan.optimizer / GB:.1f} GB, gathered layers {plan.gathered / GB:.1f} GB",
            f"  activations {plan.activations_checkpointing / GB:.1f} GB with gradient checkpointing, "
            f"{plan.activations_no_checkpointing / GB:.1f} GB without"
            f" ({'on' if s.gradient_checkpointing else 'off'} in this config)",
            f"  precision: {_precision(s)}",
            f"  launch: {launch[s.strategy]}"]
    return "\n".join(lines)


def _precision(setup: PlanSetup) -> str:
    if setup.weight_bytes == 4 and not setup.mixed_precision:
        return "fp32 throughout"
    if setup.strategy in ("fsdp2", "zero3") and setup.mixed_precision:
        where = " (in CPU RAM: offload_optimizer)" if setup.offload_optimizer and setup.strategy == "zero3" else ""
        return f"fp32 master weights and AdamW state{where}, bf16 compute"
    return ("bf16 weights, gradients and AdamW state (pure bf16: at lr 1e-5 most AdamW updates are below bf16's "
            "resolution; fp32 master weights need a sharded strategy with mixed_precision=bf16)")


def launch_command(strategy: str, gpus_per_node: int, nodes: int, config: str) -> str:
    """The command that starts the run with ``strategy`` on ``nodes`` x ``gpus_per_node`` GPUs."""
    target = f"-m lima_align.train {config}"
    if strategy in ("fsdp2", "zero3"):
        cmd = (f"accelerate launch --config_file configs/accelerate/{strategy}.yaml "
               f"--num_processes {gpus_per_node * nodes} --num_machines {nodes}")
        if nodes > 1:
            cmd += " --machine_rank $NODE_RANK --main_process_ip $MASTER_ADDR --main_process_port 29500"
        return f"{cmd} {target}"
    cmd = f"torchrun --nproc_per_node {gpus_per_node}"
    if nodes > 1:
        cmd += f" --nnodes {nodes} --node_rank $NODE_RANK --master_addr $MASTER_ADDR --master_port 29500"
    extra = " lora.enabled=true" if strategy == "lora" else ""
    return f"{cmd} {target}{extra}"


@dataclass(frozen=True)
class PlanRequest:
    """What ``lima-align train --plan`` was asked: the devices, the strategies, where the model's config is."""

    gpus_per_node: int = 8
    nodes: int = 1
    gpu_memory_gb: float = 80.0
    strategies: tuple[str, ...] = STRATEGIES
    config_json: str | None = None
    offload_optimizer: bool = False


def setup_for(config: Any, strategy: str, request: PlanRequest) -> PlanSetup:
    """The :class:`PlanSetup` of a TrainConfig on GPUs (bf16 weights unless its dtype says float32)."""
    weight_bytes = 4 if config.dtype == "float32" else 2
    return PlanSetup(strategy=strategy, gpus=request.gpus_per_node * request.nodes,
                     gpu_memory_gb=request.gpu_memory_gb, micro_batch_size=config.micro_batch_size,
                     seq_len=config.chat.max_len or 2048, gradient_checkpointing=config.gradient_checkpointing,
                     loss_chunk=config.loss_chunk, lora_r=config.lora.r, weight_bytes=weight_bytes,
                     mixed_precision=config.mixed_precision != "no", residual_dropout=config.residual_dropout > 0,
                     offload_optimizer=request.offload_optimizer)


def plan_run(config: Any, request: PlanRequest, config_path: str = "CONFIG.yaml") -> str:
    """The whole printed plan for a TrainConfig: memory per GPU for each strategy, launch commands, disk."""
    from lima_align.train.checkpoint import CheckpointPolicy

    shape = model_shape(model_config(config.model, request.config_json), config.model)
    plans = [plan_memory(shape, setup_for(config, s, request)) for s in request.strategies]
    launch = {s: launch_command(s, request.gpus_per_node, request.nodes, config_path) for s in request.strategies}
    kept = CheckpointPolicy(config.kept_epochs(), config.save_total_limit).kept_count(config.epochs)
    disks = [f"  {p.setup.strategy}: {format_disk(plan_disk(shape, p.setup, config.epochs, kept))}" for p in plans]
    return format_plan(shape, plans, launch) + "\n\n" + "\n".join(
        [f"disk ({config.epochs} epochs, keep_epochs={config.keep_epochs}):", *disks])


def run_disk(model: Any, config: Any, strategy: str) -> dict[str, float]:
    """:func:`checkpoint_disk` for the model a run is about to train (its real parameter count and dtype)."""
    from lima_align.train.checkpoint import CheckpointPolicy

    params = list({id(p): p for p in model.parameters()}.values())
    n = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    weight_bytes = params[0].element_size()
    sharded = strategy in ("fsdp2", "zero3")
    master = 4 if sharded and config.resolved_mixed_precision() == "bf16" else weight_bytes
    weights = (trainable if config.lora.enabled else n) * weight_bytes
    resume = 2 * trainable * master + (n * master if sharded else 0)
    kept = CheckpointPolicy(config.kept_epochs(), config.save_total_limit).kept_count(config.epochs)
    return checkpoint_disk(weights, resume, kept)
