"""Exact and near-duplicate detection for prompts and responses (MinHash-LSH via ``datasketch``).

Texts are compared after :func:`normalize` (Unicode NFKC, case-folded, words only: punctuation and spacing do
not make two texts different). *Exact* duplicates share the hash of that normalized text. *Near* duplicates
share enough shingles: ``shingle``-grams of characters of the normalized text (``unit: char``, the default:
robust on the short prompts of test sets, where one changed word moves a word-trigram Jaccard below any useful
threshold) or of words (``unit: word``). Their MinHash signatures (``num_perm`` permutations) are indexed in a
``datasketch.MinHashLSH`` tuned for ``threshold``, and every LSH candidate is verified by the fraction of equal
signature values (the MinHash estimate of the Jaccard similarity), which must reach ``threshold`` too.

Speed (see ``benchmarks/bench_dedup.py``): the straightforward way calls ``MinHash.update`` once per shingle
(a SHA-1 and a 128-wide numpy operation per shingle). :class:`Signer` instead builds the shingle hashes with
numpy (a rolling multiply-xor over the code points, or over xxh32 hashes of the words, each distinct word
hashed once), and applies all permutations to a whole batch of documents in one array operation. The result is bit-identical to ``datasketch.MinHash`` (scheme ``affine32``)
updated with the same shingle hashes, so the signatures go straight into the datasketch index.

A text shorter than ``shingle`` units makes one shingle of all of it; an empty text is never a near duplicate.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

_WORD = re.compile(r"\w+")
_MIX = np.uint32(0x9E3779B1)  # golden-ratio multiplier that chains word hashes into a k-gram hash
_MAX32 = np.uint32(0xFFFFFFFF)
_CHUNK = 1 << 22  # permutation x shingle cells per batch (16 MiB of uint32)


@dataclass
class DedupConfig:
    """What counts as a duplicate; the defaults catch light edits of a text of a few dozen words or more."""

    exact: bool = True  # drop exact duplicates (after normalization)
    near: bool = True  # drop near duplicates (MinHash-LSH)
    fields: list[str] = field(default_factory=lambda: ["prompt", "response"])  # compared within training
    unit: str = "char"  # shingle unit: char (characters of the normalized text) or word
    shingle: int = 5  # units per shingle
    num_perm: int = 128  # MinHash permutations
    threshold: float = 0.7  # estimated Jaccard similarity from which two texts are near duplicates
    seed: int = 1  # seed of the MinHash permutations

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"dedup.threshold must be in (0, 1), got {self.threshold}")
        if self.unit not in ("char", "word"):
            raise ValueError(f"dedup.unit must be char or word, got {self.unit!r}")
        if self.shingle < 1 or self.num_perm < 16:
            raise ValueError("dedup.shingle must be >= 1 and dedup.num_perm >= 16")
        unknown = set(self.fields) - {"prompt", "response"}
        if unknown:
            raise ValueError(f"dedup.fields: unknown {sorted(unknown)} (use prompt, response)")


def words(text: str) -> list[str]:
    """The normalized words of a text (NFKC, case-folded; punctuation dropped)."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def normalize(text: str) -> str:
    return " ".join(words(text))


def exact_key(text: str) -> str:
    """Hash of the normalized text: equal for texts that differ only in case, punctuation or spacing."""
    return hashlib.blake2b(normalize(text).encode("utf-8"), digest_size=16).hexdigest()


def shingles(text: str, k: int, unit: str = "char") -> list[str]:
    """The k-grams of the normalized text as strings (the reference the baseline hashes one by one)."""
    if unit == "char":
        s = normalize(text)
        return [s[i:i + k] for i in range(max(1, len(s) - k + 1))] if s else []
    w = words(text)
    if len(w) <= k:
        return [" ".join(w)] if w else []
    return [" ".join(w[i:i + k]) for i in range(len(w) - k + 1)]


class Signer:
    """Batched MinHash signatures, equal to ``datasketch.MinHash(scheme="affine32")`` fed the same hashes."""

    def __init__(self, num_perm: int = 128, seed: int = 1, shingle: int = 5, unit: str = "char"):
        from datasketch import MinHash

        a, b = MinHash(num_perm=num_perm, seed=seed).permutations
        self.a, self.b = a.astype(np.uint32)[:, None], b.astype(np.uint32)[:, None]
        self.num_perm, self.seed, self.shingle, self.unit = num_perm, seed, shingle, unit
        self._word_hash: dict[str, int] = {}

    def _words(self, ws: list[str]) -> np.ndarray:
        import xxhash

        cache = self._word_hash
        out = np.empty(len(ws), dtype=np.uint32)
        for i, w in enumerate(ws):
            h = cache.get(w)
            if h is None:
                h = cache[w] = xxhash.xxh32_intdigest(w.encode("utf-8"))
            out[i] = h
        return out

    def shingle_hashes(self, text: str) -> np.ndarray:
        """One uint32 per k-gram of the text (all of it chained when shorter than k)."""
        if self.unit == "char":
            ids = np.frombuffer(normalize(text).encode("utf-32-le"), dtype=np.uint32)
        else:
            ids = self._words(words(text))
        k = min(self.shingle, len(ids))
        if k == 0:
            return ids
        n = len(ids) - k + 1
        h = ids[:n].copy()
        for j in range(1, k):
            h = h * _MIX ^ ids[j:j + n]
        return h

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), num_perm)`` uint32 signatures; an empty text gets all-max values."""
        out = np.full((len(texts), self.num_perm), _MAX32, dtype=np.uint32)
        batch: list[tuple[int, np.ndarray]] = []
        cells = 0
        for i, text in enumerate(texts):
            hv = self.shingle_hashes(text)
            if len(hv):
                batch.append((i, hv))
                cells += len(hv) * self.num_perm
            if cells >= _CHUNK:
                self._fill(out, batch)
                batch, cells = [], 0
        if batch:
            self._fill(out, batch)
        return out

    def _fill(self, out: np.ndarray, batch: list[tuple[int, np.ndarray]]) -> None:
        hv = _fmix32(np.concatenate([h for _, h in batch]))
        starts = np.cumsum([0] + [len(h) for _, h in batch[:-1]])
        permuted = self.a * hv[None, :] + self.b  # uint32 arithmetic wraps: a * h + b mod 2^32
        out[[i for i, _ in batch]] = np.minimum.reduceat(permuted, starts, axis=1).T


def _fmix32(hv: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, as datasketch applies it before the permutations."""
    hv = hv ^ (hv >> np.uint32(16))
    hv = hv * np.uint32(0x85EBCA6B)
    hv = hv ^ (hv >> np.uint32(13))
    hv = hv * np.uint32(0xC2B2AE35)
    return hv ^ (hv >> np.uint32(16))


class NearDupIndex:
    """A datasketch LSH index of signatures; :meth:`find` returns the best verified match, if any."""

    def __init__(self, threshold: float, num_perm: int, seed: int = 1):
        from datasketch import MinHashLSH

        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.threshold, self.seed = threshold, seed
        self.sigs: dict[int, np.ndarray] = {}

    def _lean(self, sig: np.ndarray):
        from datasketch import LeanMinHash

        return LeanMinHash(seed=self.seed, hashvalues=sig, scheme="affine32")

    def add(self, key: int, sig: np.ndarray) -> None:
        if sig[0] == _MAX32 and (sig == _MAX32).all():  # empty text
            return
        self.sigs[key] = sig
        self.lsh.insert(key, self._lean(sig), check_duplication=False)

    def find(self, sig: np.ndarray) -> tuple[int, float] | None:
        """The indexed key most similar to ``sig`` (ties: the smallest key), if it reaches the threshold."""
        if (sig == _MAX32).all():
            return None
        best: tuple[float, int] | None = None
        for key in self.lsh.query(self._lean(sig)):
            sim = float(np.count_nonzero(self.sigs[key] == sig)) / len(sig)
            if sim >= self.threshold and (best is None or (sim, -key) > (best[0], -best[1])):
                best = (sim, key)
        return None if best is None else (best[1], best[0])


@dataclass
class Removal:
    """Why one text was dropped: ``reason`` and the kept text it duplicates (``of``, an index or id)."""

    index: int
    reason: str
    of: str
    similarity: float = 1.0


REASONS = {
    "exact_dup_heldout_prompt": "prompt equals (normalized) a dev/test prompt",
    "near_dup_heldout_prompt": "prompt is a near duplicate of a dev/test prompt (MinHash-LSH)",
    "exact_dup_prompt": "prompt equals (normalized) the prompt of an example kept earlier",
    "near_dup_prompt": "prompt is a near duplicate of the prompt of an example kept earlier",
    "exact_dup_response": "response equals (normalized) the response of an example kept earlier",
    "near_dup_response": "response is a near duplicate of the response of an example kept earlier",
}


class Deduplicator:
    """Greedy first-wins deduplication of records, each a mapping field -> text (``None``: absent).

    Records are visited in order; a record is dropped with the first reason that fires (held-out prompts
    first, then each field in ``cfg.fields``) and otherwise kept and indexed, so a kept record is never
    dropped later and the earliest of a duplicate group survives.
    """

    def __init__(self, cfg: DedupConfig, heldout: Iterable[tuple[str, str]] = ()):
        self.cfg = cfg
        self.signer = Signer(cfg.num_perm, cfg.seed, cfg.shingle, cfg.unit)
        self.heldout_ids: list[str] = []
        self.heldout_exact: dict[str, str] = {}
        self.heldout_index = NearDupIndex(cfg.threshold, cfg.num_perm, cfg.seed)
        items = list(heldout)
        # Held-out prompts are always checked, exact and near, whatever cfg.exact/near say.
        sigs = self.signer.signatures([text for _, text in items])
        for j, (hid, text) in enumerate(items):
            self.heldout_ids.append(hid)
            self.heldout_exact.setdefault(exact_key(text), hid)
            self.heldout_index.add(j, sigs[j])

    def run(self, records: Sequence[dict[str, str | None]], ids: Sequence[str]) -> list[Removal]:
        """Removals for ``records`` (one per dropped record); ``ids`` name records in the reasons."""
        cfg, fields = self.cfg, self.cfg.fields
        signed = set(fields if cfg.near else []) | ({"prompt"} if self.heldout_ids else set())
        sigs = {f: self.signer.signatures([r.get(f) or "" for r in records]) for f in sorted(signed)}
        seen: dict[str, dict[str, int]] = {f: {} for f in fields}
        index = {f: NearDupIndex(cfg.threshold, cfg.num_perm, cfg.seed) for f in fields}
        removals = []
        for i, rec in enumerate(records):
            keys = {f: exact_key(rec[f]) for f in set(fields) | {"prompt"} if rec.get(f)}
            removal = self._heldout(i, keys.get("prompt"), sigs.get("prompt"))
            for f in fields:
                if removal is not None or not rec.get(f):
                    continue
                if cfg.exact and keys[f] in seen[f]:
                    removal = Removal(i, f"exact_dup_{f}", ids[seen[f][keys[f]]])
                elif cfg.near and (hit := index[f].find(sigs[f][i])) is not None:
                    removal = Removal(i, f"near_dup_{f}", ids[hit[0]], round(hit[1], 3))
            if removal is not None:
                removals.append(removal)
                continue
            for f in fields:
                if rec.get(f):
                    seen[f].setdefault(keys[f], i)
                    if cfg.near:
                        index[f].add(i, sigs[f][i])
        return removals

    def _heldout(self, i: int, key: str | None, sigs: np.ndarray | None) -> Removal | None:
        if key is None or not self.heldout_ids:
            return None
        if key in self.heldout_exact:  # always checked: a test prompt in training is never acceptable
            return Removal(i, "exact_dup_heldout_prompt", self.heldout_exact[key])
        if sigs is not None and (hit := self.heldout_index.find(sigs[i])) is not None:
            return Removal(i, "near_dup_heldout_prompt", self.heldout_ids[hit[0]], round(hit[1], 3))
        return None
