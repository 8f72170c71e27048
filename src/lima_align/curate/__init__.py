"""Curation building blocks shared by the sources: HTML cleaning, filters that return reasons, sampling."""
