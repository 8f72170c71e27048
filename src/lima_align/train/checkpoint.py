"""Per-epoch checkpoints: what goes beside the weights, which checkpoint is complete, which one to resume.

transformers' Trainer writes each ``checkpoint-<step>`` folder (safetensors weights, tokenizer with our chat
template, optimizer, scheduler, RNG states, trainer state incl. the data-order epoch). After it has finished, we
add ``lima-run.json`` (the full run config, the data report and library versions), ``chat_format.json`` (the
chat format, read back by :func:`lima_align.chat_format.load_chat_format` wherever the checkpoint is used) and,
LAST, atomically, the completion marker ``lima-complete.json`` (``{"global_step", "epoch", "resumable"}``). A
folder without the marker (a run killed while saving) is never resumed from, so ``--resume`` always starts from
the last complete checkpoint.

The policy (``TrainConfig.keep_epochs``): once a newer checkpoint is complete, an older one is either deleted or,
if its epoch is one checkpoint selection compares (the window, 5-10 in the paper), kept with its full weights
but without the optimizer state, scheduler and RNG states (``resumable: false`` in its marker). So only the newest
checkpoint can be resumed from, and at 65B the run keeps ~130 GB per kept epoch instead of ~1 TB.
``save_total_limit`` then deletes the oldest complete checkpoints beyond that many, by step number. We rotate
ourselves: transformers' Trainer orders checkpoints by modification time, and stripping an older folder makes it
look newer than the checkpoint after it.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from lima_align.chat_format import RUN_INFO, ChatFormat, save_chat_format
from lima_align.fileio import write_json

MARKER = "lima-complete.json"
_STEP = re.compile(r"^checkpoint-(\d+)$")
# what only resuming needs (Trainer's optimizer/scheduler/RNG files, FSDP shards, DeepSpeed's partitions)
_RESUME_ONLY = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth", "optimizer_*", "pytorch_model_fsdp_*",
                "global_step*", "latest", "zero_to_fp32.py", "zero_to_torch.py")
_WEIGHTS = ("*.safetensors", "pytorch_model*.bin")
_PACKAGES = ("lima-align", "torch", "transformers", "accelerate", "peft", "tokenizers", "safetensors")


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries a checkpoint depends on (None when not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def complete_checkpoints(out: str | Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    root = Path(out)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP.match(child.name)
        if match and (child / MARKER).is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def last_complete_checkpoint(out: str | Path) -> Path | None:
    """The checkpoint ``--resume`` continues from (the newest complete, resumable one), or None."""
    done = [c for c in complete_checkpoints(out) if _marker(c).get("resumable", True)]
    return done[-1] if done else None


def _marker(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MARKER).read_text(encoding="utf-8"))


def whole_epoch(epoch: float | None) -> int | None:
    """The epoch a checkpoint closes, or None for a mid-epoch save (SIGTERM)."""
    if epoch is None or abs(epoch - round(epoch)) > 1e-4:
        return None
    return round(epoch)


@dataclass(frozen=True)
class CheckpointPolicy:
    """Which superseded checkpoints keep their weights: those closing an epoch of ``window`` (None: none)."""

    window: tuple[int, int] | None = (5, 10)
    limit: int | None = None  # save_total_limit: at most this many complete checkpoints (None or <= 0: no limit)

    def keeps_weights(self, epoch: float | None, last: bool = False) -> bool:
        whole = whole_epoch(epoch)
        in_window = self.window is not None and whole is not None and self.window[0] <= whole <= self.window[1]
        return last or in_window

    def kept_count(self, epochs: int) -> int:
        """How many checkpoints of a finished run of ``epochs`` epochs keep full weights (the last included)."""
        window = set() if self.window is None else set(range(self.window[0], self.window[1] + 1))
        kept = len((window & set(range(1, epochs + 1))) | {epochs})
        return min(kept, self.limit) if self.limit and self.limit > 0 else kept


def has_weights(folder: Path) -> bool:
    return any(next(folder.glob(pattern), None) is not None for pattern in _WEIGHTS)


def prune(out: str | Path, newest: Path, policy: CheckpointPolicy) -> list[str]:
    """Apply the policy to every complete checkpoint older than ``newest``; returns what was done, per folder."""
    done = []
    older = [f for f in complete_checkpoints(out) if _step(f) < _step(newest)]
    over = len(older) + 1 - policy.limit if policy.limit and policy.limit > 0 else 0
    for i, folder in enumerate(older):
        marker = _marker(folder)
        if i >= over and policy.keeps_weights(marker.get("epoch")) and has_weights(folder):
            if marker.get("resumable", True):
                _strip_resume_state(folder, marker)
                done.append(f"{folder.name}: weights kept, optimizer state deleted")
        else:
            (folder / MARKER).unlink()  # first: a half-deleted folder must not look complete
            shutil.rmtree(folder)
            done.append(f"{folder.name}: deleted")
    return done


def _step(folder: Path) -> int:
    return int(_STEP.match(folder.name).group(1))


def _strip_resume_state(folder: Path, marker: dict[str, Any]) -> None:
    write_json(folder / MARKER, {**marker, "resumable": False})  # first: never resume from a stripped folder
    for pattern in _RESUME_ONLY:
        for path in folder.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


class CheckpointCallback(TrainerCallback):
    """After each checkpoint is written: add the run info and the chat format, then the completion marker; then
    apply the checkpoint policy to the older checkpoints."""

    def __init__(self, run_info: dict[str, Any], fmt: ChatFormat, policy: CheckpointPolicy | None = None):
        self.run_info = run_info
        self.fmt = fmt
        self.policy = policy

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not folder.is_dir():
            return
        write_json(folder / RUN_INFO, {**self.run_info, "versions": library_versions()})
        save_chat_format(self.fmt, folder)
        write_json(folder / MARKER, {"global_step": state.global_step, "epoch": state.epoch, "resumable": True})
        if self.policy is not None:
            prune(args.output_dir, folder, self.policy)
