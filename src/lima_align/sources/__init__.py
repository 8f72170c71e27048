"""Readers that turn raw community dumps into LIMA-style candidate examples, one module per source."""
