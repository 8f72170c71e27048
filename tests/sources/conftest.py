"""Fixtures of the source tests: the real Stack Exchange dumps in ../shared/data/stackexchange."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA_ABSENT, shared_data_dir

SITES = ("beer.stackexchange.com", "coffee.stackexchange.com")


@pytest.fixture(scope="session")
def se_data() -> Path:
    root = shared_data_dir() / "stackexchange"
    if not all((root / site / "Posts.xml").is_file() for site in SITES):
        pytest.skip(f"{SHARED_DATA_ABSENT} Stack Exchange dumps under {root} (set LIMA_SHARED_DATA)")
    return root
