"""Shared fixtures: the real third-party data in ../shared/data (overridable by LIMA_SHARED_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("LIMA_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"real data folder {root} is absent (set LIMA_SHARED_DATA to its path)")
    return root


@pytest.fixture(scope="session")
def lima_train(shared_data: Path) -> Path:
    return shared_data / "lima" / "lima_train_instruction_response.jsonl"
