"""Per-epoch checkpoints: what goes beside the weights, which checkpoint is complete, which one to resume.

transformers' Trainer writes each ``checkpoint-<step>`` folder (safetensors weights, tokenizer with our chat
template, optimizer, scheduler, RNG states, trainer state incl. the data-order epoch). After it has finished, we
add ``lima-run.json`` (the full run config, the data report and library versions), ``chat_format.json`` (the
chat format, read back by :func:`lima_align.chat_format.load_chat_format` wherever the checkpoint is used) and,
LAST, atomically, the completion marker ``lima-complete.json``. A folder without the marker (a run killed while
saving) is never resumed from, so ``--resume`` always starts from the last complete checkpoint.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from lima_align.chat_format import RUN_INFO, ChatFormat, save_chat_format
from lima_align.fileio import write_json

MARKER = "lima-complete.json"
_STEP = re.compile(r"^checkpoint-(\d+)$")
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
    """The checkpoint ``--resume`` continues from, or None."""
    done = complete_checkpoints(out)
    return done[-1] if done else None


class CheckpointCallback(TrainerCallback):
    """After each checkpoint is written: add the run info and the chat format, then the completion marker."""

    def __init__(self, run_info: dict[str, Any], fmt: ChatFormat):
        self.run_info = run_info
        self.fmt = fmt

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not folder.is_dir():
            return
        write_json(folder / RUN_INFO, {**self.run_info, "versions": library_versions()})
        save_chat_format(self.fmt, folder)
        write_json(folder / MARKER, {"global_step": state.global_step, "epoch": state.epoch})
