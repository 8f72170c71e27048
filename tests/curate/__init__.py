"""Tests of lima_align.curate (a package, so that test_sampling.py does not clash with tests/generate/)."""
