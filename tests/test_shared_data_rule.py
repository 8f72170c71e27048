"""The CI rule of tests/conftest.py: a skip for absent shared data fails when LIMA_REQUIRE_SHARED_DATA=1."""

from __future__ import annotations

from pathlib import Path

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")
TESTS = """
import pytest

def test_needs_data():
    pytest.skip("shared data absent: /nowhere")

def test_other_skip():
    pytest.skip("some other reason")
"""


def test_absent_shared_data_skips_locally_and_fails_in_ci(pytester, monkeypatch):
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    pytester.makepyfile(TESTS)
    monkeypatch.delenv("LIMA_REQUIRE_SHARED_DATA", raising=False)
    pytester.runpytest_subprocess("-p", "no:xdist").assert_outcomes(skipped=2)
    monkeypatch.setenv("LIMA_REQUIRE_SHARED_DATA", "1")
    ci = pytester.runpytest_subprocess("-p", "no:xdist")
    ci.assert_outcomes(failed=1, skipped=1)  # only the shared-data skip turns into a failure
    assert "LIMA_REQUIRE_SHARED_DATA=1: the data must be there" in ci.stdout.str()
