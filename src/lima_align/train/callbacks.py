"""Run-control callbacks: stop on NaN / loss spikes; save and stop on SIGTERM; the new tokens' learning rate."""

from __future__ import annotations

import math
import signal
import statistics
from typing import Any

import torch
from transformers import TrainerCallback

from lima_align.errors import LimaError


class TrainingAnomaly(LimaError):
    """The loss or gradient norm became NaN/inf or spiked: the run stops (``anomaly=continue`` to go on)."""


class AnomalyCallback(TrainerCallback):
    """Check every logged loss and grad norm; a NaN/inf or a spike stops the run with a clear message."""

    def __init__(self, spike_factor: float = 10.0, stop: bool = True, window: int = 20, warmup: int = 5):
        self.spike_factor, self.stop, self.window, self.warmup = spike_factor, stop, window, warmup
        self.history: list[float] = []
        self.events: list[str] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        loss, grad_norm = logs.get("loss"), logs.get("grad_norm")
        problem = None
        for name, value in (("loss", loss), ("grad norm", grad_norm)):
            if value is not None and not math.isfinite(float(value)):
                problem = f"{name} is {value} at step {state.global_step}"
        if problem is None and loss is not None and len(self.history) >= self.warmup:
            median = statistics.median(self.history[-self.window:])
            if loss > self.spike_factor * median:
                problem = (f"loss spiked to {loss:.4g} at step {state.global_step} "
                           f"(> {self.spike_factor} x running median {median:.4g})")
        if loss is not None and math.isfinite(float(loss)):
            self.history.append(float(loss))
        if problem is None:
            return
        self.events.append(problem)
        if self.stop:
            raise TrainingAnomaly(f"{problem}; the last complete checkpoint is kept. Lower lr, check the data, "
                                  "or set anomaly=continue to train through it")


class SigtermCallback(TrainerCallback):
    """On SIGTERM (schedulers, preemption): finish the current optimizer step, save a checkpoint, stop."""

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None

    def on_train_begin(self, args, state, control, **kwargs):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None

    def _handle(self, signum, frame) -> None:
        self.received = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.received:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


class NewTokenLrCallback(TrainerCallback):
    """Give the embedding rows of the tokens added for the chat format (EOT, pad) their own learning rate.

    A mean-initialised EOT starts near the median of a large vocabulary (gemma-3's 262k: log-probability about
    -23 at the end of an answer) and Adam moves each coordinate by at most about ``lr`` per step, so a short run at
    the recipe's learning rate never makes it likely. AdamW's update is per coordinate, so scaling the change of
    those rows by ``new_token_lr / lr`` after each optimizer step is exactly training them at ``new_token_lr`` on
    the same schedule; every other weight is untouched. With LoRA the rows are peft's trainable-token parameters.
    """

    def __init__(self, token_ids: list[int], new_token_lr: float, lr: float):
        self.ids = sorted(set(token_ids))
        self.factor = new_token_lr / lr
        self._saved: list[tuple[torch.Tensor, Any, torch.Tensor]] = []

    def _targets(self, model: Any) -> list[tuple[torch.Tensor, Any]]:
        """(parameter, rows) pairs: the tokens' rows of each distinct embedding matrix, or peft's own rows."""
        deltas = [p for name, p in model.named_parameters() if "trainable_tokens_delta" in name and p.requires_grad]
        if deltas:
            return [(p, slice(None)) for p in {id(p): p for p in deltas}.values()]
        tables = [model.get_input_embeddings(), model.get_output_embeddings()]
        weights = {id(m.weight): m.weight for m in tables if m is not None and m.weight.requires_grad}
        index = torch.tensor(self.ids)
        return [(w, index.to(w.device)) for w in weights.values()]

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self._saved = [(w, rows, w.detach()[rows].clone()) for w, rows in self._targets(model)]

    def on_optimizer_step(self, args, state, control, **kwargs):
        with torch.no_grad():
            for weight, rows, before in self._saved:
                weight[rows] = before + self.factor * (weight[rows] - before)
        self._saved = []
