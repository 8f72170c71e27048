"""The batch worker behind the OpenAI-compatible server: the one thread that owns the engine.

Requests arrive as :class:`Job` objects on a queue. The worker waits ``window_s`` after the first one, groups what
arrived by sampling settings (``max_tokens`` is per row, so it does not split a batch) and decodes each group as
ONE batch through :meth:`HFEngine.generate` (logprobs are asked per row, so they do not split a batch). Each job receives its events through its ``sink``: streamed text
deltas, finished completions, or an error. Cancelled jobs leave the running batch at the next token; a batch
whose every job is cancelled is abandoned.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from lima_align.generate.chat import StreamDecoder
from lima_align.generate.decoding import SamplingConfig
from lima_align.generate.engine import Request
from lima_align.generate.openai_api import ChatParams

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    """One queued request: ``sink`` receives ("delta", choice, text), ("done", choice, Completion) or
    ("error", message) events, from the worker thread."""

    params: ChatParams
    sink: Callable[[tuple], None]
    cancelled: bool = False

    def send(self, event: tuple) -> None:
        if self.cancelled:
            return
        try:
            self.sink(event)
        except RuntimeError:  # the event loop is gone (server shutting down)
            self.cancelled = True


class _Abandoned(Exception):
    """Every request of the running batch was cancelled."""


@dataclass
class WorkerStats:
    batches: int = 0
    rows: int = 0
    max_rows: int = 0
    abandoned: int = 0  # batches stopped because all their clients went away
    skipped: int = 0  # requests cancelled before their batch started
    errors: int = 0


class BatchWorker:
    """The single thread that owns the engine; collects jobs for ``window_s`` and runs them as batches."""

    def __init__(self, engine: Any, *, window_s: float = 0.01, max_rows: int | None = None):
        self.engine = engine
        self.window_s = window_s
        self.max_rows = max_rows or engine.batch_size
        self.queue: queue.Queue[Job] = queue.Queue()
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lima-align-generate", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def submit(self, job: Job) -> None:
        self.queue.put(job)

    def _collect(self) -> list[Job]:
        try:
            jobs = [self.queue.get(timeout=0.1)]
        except queue.Empty:
            return []
        deadline, rows = time.monotonic() + self.window_s, jobs[0].params.n
        while rows < self.max_rows:
            try:
                jobs.append(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
            rows += jobs[-1].params.n
        return jobs

    def _loop(self) -> None:
        while not self._stop.is_set():
            groups: dict[SamplingConfig, list[Job]] = {}
            for job in self._collect():  # max_tokens is per row, so it does not split batches
                groups.setdefault(replace(job.params.config, max_new_tokens=1), []).append(job)
            for key, jobs in groups.items():
                cap = max(job.params.config.max_new_tokens for job in jobs)
                self._run(jobs, replace(key, max_new_tokens=cap))

    def _run(self, jobs: list[Job], config: SamplingConfig) -> None:
        self.stats.skipped += sum(j.cancelled for j in jobs)
        jobs = [j for j in jobs if not j.cancelled]
        owners = [(job, s) for job in jobs for s in range(job.params.n)]
        if not owners:
            return
        requests = [Request(str(job.params.seed), job.params.turns, s, job.params.config.max_new_tokens,
                            job.params.top_logprobs, stop=job.params.stop) for job, s in owners]
        stop_ids = self.engine.stop_ids
        decoders = [StreamDecoder(self.engine.tokenizer, stop_ids, job.params.stop) if job.params.stream else None
                    for job, _ in owners]

        def on_token(i: int, token: int) -> None:
            if all(j.cancelled for j in jobs):
                raise _Abandoned
            if decoders[i] is not None and (delta := decoders[i].push(token)):
                owners[i][0].send(("delta", owners[i][1], delta))

        self.stats.batches += 1
        self.stats.rows += len(owners)
        self.stats.max_rows = max(self.stats.max_rows, len(owners))
        cancelled_rows = 0
        try:
            for c in self.engine.generate(requests, config, on_token=on_token,
                                          should_stop=lambda i: owners[i][0].cancelled):
                job, choice = owners[c.index]
                cancelled_rows += c.finish_reason == "cancelled"
                if decoders[c.index] is not None and (rest := decoders[c.index].finish(c.text)):
                    job.send(("delta", choice, rest))
                job.send(("done", choice, c))
            # every row was stopped by its cancellation (a client went away between two checks of one step)
            self.stats.abandoned += cancelled_rows == len(owners)
        except _Abandoned:
            self.stats.abandoned += 1
        except Exception as exc:  # keep serving: fail this batch's requests, not the server
            log.exception("generation failed")
            self.stats.errors += 1
            for job in jobs:
                job.send(("error", f"generation failed: {type(exc).__name__}: {exc}"))
