"""One training run end to end: model + tokenizer + chat format, data, pre-flight checks, Trainer."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from lima_align.chat_format import ChatFormat, add_special_tokens, eot_token_id, install_chat_template
from lima_align.conversation import Example
from lima_align.errors import LimaError
from lima_align.train.data import DataReport, RenderedDataset, load_examples, render_dataset
from lima_align.train.dropout import ResidualDropout, add_residual_dropout
from lima_align.train.plan import format_disk, run_disk
from lima_align.train.preflight import run_preflight
from lima_align.train.sharding import resolved_strategy
from lima_align.train.config import LoraSettings, TrainConfig
from lima_align.train.trainer import TrainResult, build_trainer, run_info, run_trainer


@dataclass
class Prepared:
    """Everything a run trains: the (wrapped) model, tokenizer, format and the rendered data."""

    model: Any
    tokenizer: Any
    fmt: ChatFormat
    examples: list[Example]
    dataset: RenderedDataset
    report: DataReport
    dropout: ResidualDropout


def load_base(config: TrainConfig) -> tuple[Any, Any]:
    """Load the base model (fp32 on CPU, bf16 on GPU unless ``dtype`` says otherwise) and its tokenizer."""
    from lima_align.models import load_model, load_tokenizer

    dtype = config.dtype
    if dtype == "auto":
        dtype = "bfloat16" if torch.cuda.is_available() else "float32"
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype)}
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    if config.lora.enabled and config.lora.load_in_4bit:
        kwargs["quantization_config"] = _four_bit_config()
    return load_model(config.model, **kwargs), load_tokenizer(config.model)


def _four_bit_config() -> Any:
    from transformers import BitsAndBytesConfig

    if not torch.cuda.is_available():
        raise LimaError("QLoRA (lora.load_in_4bit=true) needs a CUDA device and bitsandbytes")
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_compute_dtype=torch.bfloat16)


def apply_lora(model: Any, settings: LoraSettings, trainable_tokens: list[int]) -> Any:
    """Wrap ``model`` with peft LoRA; the new tokens' embeddings (EOT, pad) stay trainable."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:  # pragma: no cover - peft is a dependency
        raise LimaError("LoRA needs the peft package: pip install peft") from exc
    lora = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=settings.target_modules, task_type="CAUSAL_LM",
                      trainable_token_indices=sorted(set(trainable_tokens)))
    return get_peft_model(model, lora)


def prepare(config: TrainConfig, model: Any = None, tokenizer: Any = None) -> Prepared:
    """Load (or take) model and tokenizer, add EOT, residual dropout, LoRA; read, render and check the data."""
    if model is None or tokenizer is None:
        model, tokenizer = load_base(config)
    fmt = config.chat
    add_special_tokens(tokenizer, model, fmt)
    install_chat_template(tokenizer, fmt)
    eot = eot_token_id(tokenizer, fmt)
    set_generation_stop(getattr(model, "generation_config", None), eot, tokenizer.pad_token_id)
    dropout = add_residual_dropout(model, config.residual_dropout)
    if config.lora.enabled:
        model = apply_lora(model, config.lora, [eot, tokenizer.pad_token_id])
    examples, read_report = load_examples(config.data, config.data_format, config.max_examples, config.max_chars)
    dataset, report = render_dataset(examples, tokenizer, fmt)
    report.read = read_report.to_dict()
    if not dataset.items:
        raise LimaError(f"{config.data}: no trainable example left ({report.to_dict()})")
    run_preflight(examples, dataset, tokenizer, model, fmt)
    return Prepared(model, tokenizer, fmt, examples, dataset, report, dropout)


def set_generation_stop(gen: Any, eot: int, pad: int | None) -> None:
    """A model's ``GenerationConfig``: generation stops at EOT (first) or the old EOS, so plain ``generate`` on a
    checkpoint stops."""
    if gen is None:
        return
    old = gen.eos_token_id
    old = [] if old is None else ([old] if isinstance(old, int) else list(old))
    gen.eos_token_id = [eot] + [t for t in old if t != eot]
    gen.pad_token_id = pad


def train(config: TrainConfig, *, resume: bool = False, model: Any = None, tokenizer: Any = None,
          callbacks: Sequence[Any] = (), log: Callable[[str], None] = print) -> TrainResult:
    """Run the LIMA recipe described by ``config``; ``model``/``tokenizer`` override loading (tests)."""
    torch.manual_seed(config.seed)
    prepared = prepare(config, model, tokenizer)
    report = prepared.report.to_dict()
    dropped = {**report["read"].get("dropped", {}), **report["dropped"]}  # when read, then when rendered
    log(f"data: {report['kept']} examples, {report['tokens']} tokens ({report['supervised_tokens']} supervised), "
        f"{report['trimmed']} trimmed to {config.chat.max_len}, dropped {dropped or 'none'}")
    world_size = max(1, int(os.environ.get("WORLD_SIZE", "1")))
    strategy = resolved_strategy(config, world_size)
    if os.environ.get("RANK", "0") == "0":
        log(f"{strategy} over {world_size} process(es); {format_disk(run_disk(prepared.model, config, strategy))}")
    trainer = build_trainer(config, prepared.model, prepared.tokenizer, prepared.dataset,
                            run_info(config, report), callbacks)
    return run_trainer(trainer, config, resume)


def end_distributed() -> None:
    """Leave the process group cleanly once every rank has finished (a launched job's last call).

    Exiting with gloo's threads still alive can abort the interpreter at shutdown ("terminate called without an
    active exception", SIGABRT) after a run that otherwise succeeded, which torchrun reports as a failed job.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
