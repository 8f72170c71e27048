"""The LIMA fine-tuning recipe as a typed config: every default here is the paper's (LIMA_SPEC section 2).

``configs/train/lima.yaml`` is exactly these defaults; the 7B / 65B presets and the CPU demo override a few fields.
The chat format is one section, ``chat`` (a :class:`~lima_align.chat_format.ChatFormat`: ``chat.max_len=512``);
its fields' old top-level spellings (``max_len: 512``, ``eot=...``) still work, with a notice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from lima_align.chat_format import ChatFormat

BATCHING = ("auto", "packed", "rebalance", "padded")
MIXED_PRECISION = ("auto", "bf16", "no")
STRATEGIES = ("auto", "ddp", "fsdp2", "zero3")


@dataclass
class LoraSettings:
    """LoRA via peft (the paper uses full fine-tuning; ``enabled=false`` by default)."""

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str = "all-linear"
    load_in_4bit: bool = False  # QLoRA: needs bitsandbytes and a CUDA device


@dataclass
class TrainConfig:
    """One training run. Field defaults are the LIMA recipe."""

    # what to train, on what, where to write
    model: str = "gemma-3-270m"
    data: str = "../shared/data/lima/lima_train_instruction_response.jsonl"
    data_format: str | None = None  # None: detect from the file
    out: str = "runs/lima"
    max_examples: int | None = None  # keep only the first N examples (demos, smoke tests)
    max_chars: int | None = None  # drop examples longer than this many characters (demos)
    # chat format: EOT token, role prefixes, what is supervised, trim length (saved beside every checkpoint)
    chat: ChatFormat = field(default_factory=ChatFormat)
    # optimisation (AdamW, no warmup, linear decay lr -> lr_end over the whole run)
    epochs: int = 15
    lr: float = 1e-5
    lr_end: float = 1e-6
    beta1: float = 0.9
    beta2: float = 0.95
    weight_decay: float = 0.1
    batch_size: int = 32  # examples per optimizer step (64 for smaller models in the paper)
    micro_batch_size: int = 4  # examples per forward pass per process; accumulation fills the rest
    max_grad_norm: float = 1.0
    # learning rate of the embedding rows of the tokens added for the chat format (EOT, pad) on the same schedule;
    # None: ``lr`` like every weight (the paper). A short run needs more: a mean-initialised EOT starts near the
    # median of the vocabulary and moves about ``lr`` per coordinate per step (DDP / one process only)
    new_token_lr: float | None = None
    # residual dropout: p rises linearly from 0 at the bottom layer to this at the top
    residual_dropout: float = 0.3
    # speed
    # batching: "packed" (one row, restarting position_ids; padding-free), "rebalance" (each optimizer step's
    # examples sorted by length into padded micro-batches of balanced cost), "padded" (random micro-batches) or
    # "auto": packed with flash_attention_2 (varlen kernels), rebalance otherwise (sdpa would attend across the
    # whole packed row under a block-diagonal mask: quadratic in the packed length)
    batching: str = "auto"
    loss_chunk: int = 4096  # supervised tokens per LM-head + CE chunk (0: one chunk)
    dtype: str = "auto"  # weights: auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16
    # autocast: "bf16" (matmuls in bf16, weights and optimizer as loaded), "no", or "auto": bf16 on a GPU that
    # supports it and on CPUs with native bf16 instructions (AVX512-BF16 / AMX), otherwise no
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = False
    attn_implementation: str | None = None  # None: transformers' default (sdpa); flash_attention_2 on GPU
    # run control
    seed: int = 42
    anomaly: str = "stop"  # "stop" or "continue" when the loss/grad norm is NaN or spikes
    spike_factor: float = 10.0  # a loss above spike_factor x the running median is a spike
    logging_steps: int = 1
    tensorboard: bool = True
    # more experiment trackers transformers reports to (wandb, mlflow, trackio, comet_ml, ...), beside tensorboard
    report_to: list[str] = field(default_factory=list)
    # at most this many complete checkpoints, the oldest steps deleted first (after keep_epochs; None: no limit)
    save_total_limit: int | None = None
    # checkpoints: every epoch is saved; once a newer one is complete, an older one keeps its full weights only if
    # its epoch is in this window (the epochs checkpoint selection compares: "5-10" in the paper; "all"; "none"),
    # and only the newest keeps the optimizer state needed to resume. The last epoch always keeps its weights.
    keep_epochs: str = "5-10"
    # how the processes share the model: "auto" (what the launcher says: an accelerate FSDP/DeepSpeed config, else
    # DDP), "ddp" (a full replica per process), "fsdp2" (torch fully_shard, settings of
    # configs/accelerate/fsdp2.yaml, under torchrun too) or "zero3" (DeepSpeed ZeRO-3, configs/accelerate/zero3.json)
    strategy: str = "auto"
    lora: LoraSettings = field(default_factory=LoraSettings)

    # the chat format's fields were top-level keys before they became the ``chat`` section
    legacy_keys: ClassVar[dict[str, str]] = {
        name: f"chat.{name}" for name in ("eot", "user_prefix", "assistant_prefix", "train_on", "max_len")}

    def __post_init__(self) -> None:
        if self.anomaly not in ("stop", "continue"):
            raise ValueError(f"anomaly must be 'stop' or 'continue', got {self.anomaly!r}")
        if self.batching not in BATCHING:
            raise ValueError(f"batching must be one of {', '.join(BATCHING)}, got {self.batching!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, "
                             f"got {self.mixed_precision!r}")
        if self.batch_size < 1 or self.micro_batch_size < 1:
            raise ValueError("batch_size and micro_batch_size must be >= 1")
        if not 0.0 <= self.residual_dropout < 1.0:
            raise ValueError(f"residual_dropout must be in [0, 1), got {self.residual_dropout}")
        if self.new_token_lr is not None and not self.new_token_lr > 0:
            raise ValueError(f"new_token_lr must be > 0 (or null: lr), got {self.new_token_lr}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        self.kept_epochs()  # validates keep_epochs

    def kept_epochs(self) -> tuple[int, int] | None:
        """``keep_epochs`` as an inclusive (first, last) window; None keeps only the last epoch."""
        text = str(self.keep_epochs).strip().lower()
        if text in ("none", ""):
            return None
        if text == "all":
            return (1, max(1, self.epochs))
        first, _, last = text.partition("-")
        try:
            window = (int(first), int(last or first))
        except ValueError:
            raise ValueError(f"keep_epochs: expected FIRST-LAST (e.g. 5-10), all or none, got {self.keep_epochs!r}")
        if window[0] > window[1]:
            raise ValueError(f"keep_epochs: empty window {self.keep_epochs!r}")
        return window

    def accumulation_steps(self, world_size: int = 1) -> int:
        """Gradient accumulation steps so that one optimizer step sees ``batch_size`` examples."""
        per_step = self.micro_batch_size * world_size
        if self.batch_size % per_step:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of micro_batch_size x processes "
                             f"({self.micro_batch_size} x {world_size})")
        return self.batch_size // per_step

    def resolved_batching(self) -> str:
        """``batching`` with "auto" decided: packed only where attention has varlen kernels."""
        if self.batching != "auto":
            return self.batching
        return "packed" if self.attn_implementation == "flash_attention_2" else "rebalance"

    def resolved_mixed_precision(self) -> str:
        """``mixed_precision`` with "auto" decided for this machine's device."""
        if self.mixed_precision != "auto":
            return self.mixed_precision
        import torch

        if torch.cuda.is_available():
            return "bf16" if torch.cuda.is_bf16_supported() else "no"
        return "bf16" if cpu_has_native_bf16() else "no"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls natively (oneDNN with AVX512-BF16 or AMX), so autocast speeds it up."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
