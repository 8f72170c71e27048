"""Which engine generates answers: our transformers engine (``hf``) or vLLM (``vllm``), and vLLM's scale knobs.

Every place that generates (``lima-align generate``, ``select``, the run recipe's generate stage, ``ablate``)
takes an :class:`EngineOptions`; :func:`lima_align.generate.batch.open_engine` builds the engine it names and
frees it afterwards. Both engines take the same :class:`~lima_align.generate.engine.Request` objects and yield
the same :class:`~lima_align.generate.engine.Completion` objects, so the output rows, resumability and seeding
contract are shared (what differs under vLLM is said in :mod:`lima_align.generate.vllm_engine`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ENGINES = ("hf", "vllm")


@dataclass(frozen=True)
class EngineOptions:
    """The engine's ``name`` and, for vLLM, how it spreads over GPUs (ignored by the HF engine)."""

    name: str = "hf"
    tensor_parallel_size: int = 1  # GPUs one model is split over
    data_parallel_size: int = 1  # independent engines (one per group of tensor_parallel_size GPUs), rows dealt out
    gpu_memory_utilization: float = 0.9  # share of each GPU's memory vLLM may take (weights + KV cache)
    max_model_len: int | None = None  # prompt + answer tokens; None: the model's own context
    dtype: str | None = None  # None: float32 on CPU, bfloat16 on a GPU that has it (as the HF engine)
    # no torch.compile / CUDA graphs: a faster start, slower steps on a GPU. None: eager on a CPU (measured with
    # SmolLM2-135M, 80 prompts: 72 s instead of 195 s in all, the same 21 s of decoding), compiled on a GPU
    enforce_eager: bool | None = None
    cpu_kv_cache_gib: float = 4.0  # on a CPU: the KV cache's size (vLLM would take most of the RAM)

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise ValueError(f"engine name must be one of {ENGINES}, got {self.name!r}")
        for name in ("tensor_parallel_size", "data_parallel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if not self.cpu_kv_cache_gib > 0:
            raise ValueError(f"cpu_kv_cache_gib must be > 0, got {self.cpu_kv_cache_gib}")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2, got {self.max_model_len}")

    @property
    def is_vllm(self) -> bool:
        return self.name == "vllm"

    def stage_key(self) -> dict[str, Any] | None:
        """What a pipeline stage's key records: nothing for the HF engine (earlier runs keep their keys)."""
        return asdict(self) if self.is_vllm else None
