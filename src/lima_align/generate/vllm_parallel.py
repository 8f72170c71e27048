"""Data parallel vLLM: ``data_parallel_size`` independent engines, each in its own process on its own GPU(s).

vLLM's offline ``LLM`` runs one engine per process, so N GPUs of a node answering one prompts file means N
processes. Rows are dealt out round robin (row i to engine i mod N); every engine sends its completions back
through one queue and the parent yields them, so :func:`~lima_align.generate.batch.generate_file` stays the one
writer of the output file (resume and fsync as with one engine). Engine k sees GPUs
``k*tp .. k*tp + tp - 1`` of the parent's (``CUDA_VISIBLE_DEVICES`` when set), tp = tensor_parallel_size.
On a machine without a GPU every engine runs on the CPU (what the tests do).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import queue
from typing import Any, Iterable, Iterator

from lima_align.errors import LimaError
from lima_align.generate.decoding import SamplingConfig
from lima_align.generate.engine import Completion, Request
from lima_align.generate.engines import EngineOptions

_DONE = "done"


class DataParallelVLLM:
    """``options.data_parallel_size`` :class:`~lima_align.generate.vllm_engine.VLLMEngine` processes."""

    def __init__(self, model: str, options: EngineOptions, *, add_eot: bool = False, allow_no_eot: bool = False,
                 device: str | None = None):
        from lima_align.generate.vllm_engine import vllm_folder

        self.eot = {"add_eot": add_eot, "allow_no_eot": allow_no_eot}  # how each engine treats a model without EOT
        vllm_folder(model, **self.eot)  # materialise once, here, before the engines look for it
        self.model, self.device = model, device
        self.options = dataclasses.replace(options, data_parallel_size=1)
        self.size = options.data_parallel_size

    def generate(self, requests: Iterable[Request], config: SamplingConfig, on_token: Any = None,
                 should_stop: Any = None) -> Iterator[Completion]:
        if on_token is not None or should_stop is not None:
            raise LimaError("the vLLM engine does not stream tokens; serve with `vllm serve` instead")
        shares: list[list[tuple[int, Request]]] = [[] for _ in range(self.size)]
        for i, req in enumerate(requests):
            shares[i % self.size].append((i, req))
        ctx = mp.get_context("spawn")  # vLLM and CUDA do not survive fork
        results = ctx.Queue()
        workers = [self._start(ctx, k, share, config, results) for k, share in enumerate(shares) if share]
        try:
            yield from _collect(workers, results)
        finally:
            for w in workers:
                if w.is_alive():
                    w.terminate()
                w.join()

    def _start(self, ctx: Any, k: int, share: list[tuple[int, Request]], config: SamplingConfig,
               results: Any) -> Any:
        env = gpu_group(k, self.options.tensor_parallel_size)
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)  # a spawned child takes the environment as it is at start()
        try:
            worker = ctx.Process(target=_serve_share, name=f"vllm-dp{k}", daemon=False,
                                 args=(self.model, self.options, self.eot, self.device, share, config, results))
            worker.start()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        return worker


def gpu_group(k: int, tp: int) -> dict[str, str]:
    """The ``CUDA_VISIBLE_DEVICES`` of engine ``k`` (nothing on a machine without a GPU)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    group = ids[k * tp:(k + 1) * tp]
    if len(group) < tp:
        raise LimaError(f"data parallel engine {k} needs GPUs {k * tp}-{(k + 1) * tp - 1}; {len(ids)} are visible")
    return {"CUDA_VISIBLE_DEVICES": ",".join(group)}


def _collect(workers: list[Any], results: Any) -> Iterator[Completion]:
    running = len(workers)
    while running:
        try:
            kind, payload = results.get(timeout=5)
        except queue.Empty:
            dead = [w for w in workers if w.exitcode not in (None, 0)]
            if dead:
                raise LimaError(f"vLLM engine process {dead[0].name} died (exit code {dead[0].exitcode}); "
                                f"the rows written so far are kept: run again to resume") from None
            continue
        if kind == "error":
            raise LimaError(f"vLLM engine process failed: {payload}")
        if kind == _DONE:
            running -= 1
        else:
            yield payload


def _serve_share(model: str, options: EngineOptions, eot: dict[str, bool], device: str | None,
                 share: list[tuple[int, Request]], config: SamplingConfig, results: Any) -> None:
    """One engine process: answer ``share`` and send each completion (with its index in the whole input)."""
    from lima_align.generate.vllm_engine import VLLMEngine

    try:
        engine = VLLMEngine(model, options, **eot, device=device)
        indices = [i for i, _ in share]
        for completion in engine.generate([req for _, req in share], config):
            results.put(("row", dataclasses.replace(completion, index=indices[completion.index])))
        engine.close()
    except BaseException as exc:  # noqa: BLE001 - said to the parent, which stops the job
        results.put(("error", f"{type(exc).__name__}: {exc}"))
        raise
    results.put((_DONE, None))
