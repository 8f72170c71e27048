"""Dedup: signatures equal datasketch's, normalization, near duplicates, first-wins greedy, held-out checks."""

from __future__ import annotations

import numpy as np
import pytest
from datasketch import MinHash

from lima_align.curate.dedup import DedupConfig, Deduplicator, Signer, exact_key, shingles

TEXT = ("Temperature sampling over sites gives a more uniform spread of domains: the probability of a site is "
        "proportional to its size to the power one over tau, with tau equal to three in the paper.")


@pytest.mark.parametrize("unit, k", [("char", 5), ("word", 3)])
def test_batched_signatures_equal_datasketch_minhash(unit: str, k: int) -> None:
    signer = Signer(num_perm=64, seed=7, shingle=k, unit=unit)
    texts = [TEXT, "short", "", "two words", TEXT.upper()]
    sigs = signer.signatures(texts)
    for text, sig in zip(texts, sigs):
        m = MinHash(num_perm=64, seed=7, hashfunc=lambda x: x)
        for h in signer.shingle_hashes(text):
            m.update(int(h))
        assert np.array_equal(m.hashvalues, sig)
    assert np.array_equal(sigs[0], sigs[4])  # case does not matter


def test_exact_key_ignores_case_punctuation_and_spacing() -> None:
    assert exact_key("How do I boil an egg?") == exact_key("how do i   boil an EGG")
    assert exact_key("How do I boil an egg?") != exact_key("How do I fry an egg?")
    assert shingles("ab", 5) == ["ab"] and shingles("", 5) == []


def _run(records, cfg=None, heldout=()):
    return Deduplicator(cfg or DedupConfig(), heldout).run(records, [f"r{i}" for i in range(len(records))])


def test_near_duplicates_found_and_first_wins() -> None:
    edited = TEXT.replace("more uniform", "much more uniform").replace("paper.", "paper!")
    records = [{"prompt": "Explain temperature sampling.", "response": TEXT},
               {"prompt": "What is nucleus sampling?", "response": "Nucleus sampling keeps the top-p mass. " * 5},
               {"prompt": "explain Temperature  sampling!!", "response": "Something else entirely here."},
               {"prompt": "Another question entirely", "response": edited}]
    removals = _run(records)
    assert [(r.index, r.reason, r.of) for r in removals] == [(2, "exact_dup_prompt", "r0"),
                                                            (3, "near_dup_response", "r0")]
    assert 0.7 <= removals[1].similarity < 1.0
    assert _run(records, DedupConfig(near=False, exact=False)) == []


def test_heldout_prompts_are_always_checked() -> None:
    held = [("t1", "Write a short poem about the sea at night, in the style of a sailor's song.")]
    records = [{"prompt": "write a SHORT poem about the sea at night; in the style of a sailor's song",
                "response": "x"},
               {"prompt": "Write a short poem about the seas at night, in the style of a sailor's song.",
                "response": "y"},
               {"prompt": "Write a limerick about a cat.", "response": "z"}]
    removals = _run(records, DedupConfig(exact=False, near=False), held)
    assert [(r.index, r.reason, r.of) for r in removals] == [(0, "exact_dup_heldout_prompt", "t1"),
                                                            (1, "near_dup_heldout_prompt", "t1")]


def test_config_is_validated() -> None:
    for bad in ({"threshold": 1.5}, {"unit": "byte"}, {"fields": ["title"]}, {"shingle": 0}):
        with pytest.raises(ValueError):
            DedupConfig(**bad)
