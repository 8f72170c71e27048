"""Judges described as data: one YAML per judge (``configs/judges/*.yaml``) read into :class:`JudgeConfig`.

``kind: openai`` is any OpenAI-compatible endpoint (``base_url``; the key is read from the environment variable
``api_key_env``, never written in the file); ``kind: local`` loads an instruct model in process, with
transformers or, given ``engine: {name: vllm}``, in a vLLM engine.

``mode`` is how a verdict is read:

* ``generate``: the judge writes a reply (one sentence of reasoning and a verdict line) that a parser reads; a
  reply that says nothing clear is a missing verdict. The default of ``kind: openai``.
* ``weighted``: the judge is asked for the verdict token alone and the verdict is read from the probabilities
  of the verdict tokens at the first position of its reply (the templates' ``choices``), for HTTP judges from
  ``top_logprobs`` (``top_logprobs: K``; OpenAI allows up to 20). Pairwise: both orders averaged, so no position
  preference and, for the local judge, no missing verdict (protocols.py). The default of ``kind: local``: a
  small model's free text is mostly unparseable or "A", its next-token distribution still carries a signal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lima_align.config import load_config
from lima_align.errors import LimaError
from lima_align.evaluate.clients import CallParams, ChatJudge, OpenAIJudge, Pricing, RetryPolicy
from lima_align.generate.engines import EngineOptions

KINDS = ("openai", "local")
MODES = ("generate", "weighted")
DEFAULT_MODE = {"openai": "generate", "local": "weighted"}


@dataclass
class JudgeConfig:
    name: str = "judge"
    kind: str = "openai"
    model: str = "gpt-4"
    base_url: str | None = None  # None: $OPENAI_BASE_URL, else OpenAI's
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = None
    concurrency: int = 8
    max_retries: int = 6
    backoff_s: float = 1.0
    timeout_s: float = 120.0
    input_per_mtok: float = 0.0  # US dollars per million prompt tokens
    output_per_mtok: float = 0.0
    device: str | None = None  # kind: local only
    engine: EngineOptions = field(default_factory=EngineOptions)  # kind: local only: hf, or vllm with its options
    mode: str | None = None  # generate | weighted; None: the kind's default (DEFAULT_MODE)
    top_logprobs: int = 20  # weighted mode: how many first-token logprobs to ask an HTTP endpoint for

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.concurrency < 1 or self.max_retries < 0 or self.max_tokens < 1:
            raise ValueError("concurrency and max_tokens must be >= 1, max_retries >= 0")
        self.mode = self.mode or DEFAULT_MODE[self.kind]
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.engine.is_vllm and self.kind != "local":
            raise ValueError("engine: vllm is for kind: local (a vLLM server is kind: openai with its base_url)")
        if not 1 <= self.top_logprobs <= 20:
            raise ValueError(f"top_logprobs must be in [1, 20], got {self.top_logprobs}")

    @property
    def weighted(self) -> bool:
        return self.mode == "weighted"

    def params(self, sample: int = 0, candidates: tuple[str, ...] = ()) -> CallParams:
        """The calls' settings; in weighted mode ``candidates`` are the template's verdict tokens."""
        if self.weighted:
            return CallParams(self.temperature, 1, self.seed, sample, self.top_logprobs, tuple(candidates))
        return CallParams(self.temperature, self.max_tokens, self.seed, sample)

    def pricing(self) -> Pricing:
        return Pricing(self.input_per_mtok, self.output_per_mtok)

    def provenance(self) -> dict[str, Any]:
        info = {"name": self.name, "kind": self.kind, "model": self.model, "base_url": self.base_url,
                "temperature": self.temperature, "max_tokens": self.max_tokens, "mode": self.mode}
        if self.weighted:
            info["top_logprobs"] = self.top_logprobs
        if self.engine.is_vllm:
            info["engine"] = "vllm"
        return info

    def identity(self) -> dict[str, Any]:
        """The settings that change verdicts (not where or how fast the judge runs): keys of resumable jobs."""
        return {**self.provenance(), "seed": self.seed}


def load_judge_config(path: str | Path | None, overrides: list[str] | None = None) -> JudgeConfig:
    return load_config(JudgeConfig, path, overrides)


def judge_from(path: str | Path | None, settings: dict[str, Any], device: str | None = None,
               where: str = "judge") -> JudgeConfig:
    """A judge YAML with inline settings over it; ``device`` is the default device of a local judge."""
    from lima_align.config import from_dict, yaml_with

    values = yaml_with(path, settings)
    if device and values.get("kind") == "local":
        values.setdefault("device", device)
    return from_dict(JudgeConfig, values, where=where)


def build_client(config: JudgeConfig) -> ChatJudge:
    """The client a config describes (a local model is loaded here)."""
    if config.kind == "local" and config.engine.is_vllm:
        from lima_align.evaluate.local_vllm import VLLMJudge

        return VLLMJudge(config.model, config.engine, device=config.device)
    if config.kind == "local":
        from lima_align.evaluate.local import LocalJudge

        return LocalJudge.load(config.model, device=config.device)
    key = os.environ.get(config.api_key_env) if config.api_key_env else None
    if key is None and config.base_url is None and not os.environ.get("OPENAI_BASE_URL"):
        raise LimaError(f"judge {config.name!r}: set ${config.api_key_env} (or give base_url for a local "
                        f"OpenAI-compatible server)")
    retry = RetryPolicy(config.max_retries, config.backoff_s, timeout_s=config.timeout_s)
    return OpenAIJudge(config.model, base_url=config.base_url, api_key=key, concurrency=config.concurrency,
                       retry=retry)
