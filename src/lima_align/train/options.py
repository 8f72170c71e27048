"""From command-line words to a :class:`TrainConfig`: shared by ``lima-align train`` and ``python -m lima_align.train``.

Both entry points parse their own arguments; this module only turns the parsed values into a typed config.
"""

from __future__ import annotations

from lima_align.config import load_config
from lima_align.train.config import TrainConfig

SHORTCUTS = ("data", "model", "out")


def config_from_args(config_path: str | None, overrides: list[str], **shortcuts: str | None) -> TrainConfig:
    """``config_path`` (YAML) + ``key=value`` overrides + the ``--data/--model/--out`` shortcuts (applied last)."""
    extra = [f"{key}={value}" for key, value in shortcuts.items() if key in SHORTCUTS and value is not None]
    return load_config(TrainConfig, config_path, list(overrides) + extra)
