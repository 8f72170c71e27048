"""Near-duplicate removal over >= 50,000 documents: batched signatures vs per-shingle ``MinHash.update``.

Documents: passages of 20-60 words cut from the real texts in ../shared/data (LIMA responses, AlpacaEval
outputs, Stack Exchange posts, WritingPrompts stories, Anthropic HH transcripts, ...), exact and near duplicates
among them removed first (so the base set is duplicate-free), then ``--dup-share`` of them copied with
controlled perturbations (a few words deleted, swapped or replaced, case and punctuation changed): the true
duplicate pairs are exactly (base, copy). Both methods use the same shingles, the same datasketch LSH index and
the same verification; they differ only in how signatures are computed:

- baseline: one ``datasketch.MinHash`` per document, ``update(shingle.encode())`` per shingle (SHA-1);
- ours: :class:`lima_align.curate.dedup.Signer` (numpy shingle hashes, all permutations at once per batch).

Prints docs/s for each, the ratio, and precision/recall of the found pairs against the planted ones.
Run: python benchmarks/bench_dedup.py [--docs 50000] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import time
from pathlib import Path

import numpy as np

from lima_align.curate.dedup import DedupConfig, NearDupIndex, Signer, exact_key, shingles

REPO = Path(__file__).resolve().parents[1]


def _texts(data: Path) -> list[str]:
    out: list[str] = []
    for line in (data / "lima" / "lima_train_instruction_response.jsonl").open():
        row = json.loads(line)
        out += [row["instruction"], row["response"]]
    for name in ("text_davinci_003_model_outputs.json", "example_outputs.json"):
        out += [r["output"] for r in json.loads((data / "eval" / "alpaca_eval" / name).read_text())]
    with gzip.open(data / "eval" / "anthropic_hh" / "harmless-base_test.jsonl.gz", "rt") as fh:
        out += [json.loads(line)["chosen"] for line in fh]
    for site in ("beer.stackexchange.com", "coffee.stackexchange.com"):
        xml = (data / "stackexchange" / site / "Posts.xml").read_text()
        out += [re.sub(r"&lt;[^&]*&gt;|&[a-z#0-9]+;", " ", b) for b in re.findall(r'Body="([^"]*)"', xml)]
    import csv

    with (data / "writingprompts" / "writingprompts_100.csv").open(newline="") as fh:
        out += [r["story"] for r in csv.DictReader(fh)]
    return out


def passages(texts: list[str], rng: random.Random) -> list[str]:
    """Cut texts into passages of 20-60 words."""
    out = []
    for text in texts:
        words = text.split()
        i = 0
        while len(words) - i >= 20:
            n = rng.randint(20, 60)
            out.append(" ".join(words[i:i + n]))
            i += n
    return out


def perturb(text: str, rng: random.Random, vocab: list[str]) -> str:
    """A light edit: ~4% of words deleted/swapped/replaced, some case and punctuation noise."""
    words = text.split()
    for _ in range(max(1, len(words) // 25)):
        i = rng.randrange(len(words))
        op = rng.random()
        if op < 0.33 and len(words) > 2:
            del words[i]
        elif op < 0.66 and i + 1 < len(words):
            words[i], words[i + 1] = words[i + 1], words[i]
        else:
            words[i] = rng.choice(vocab)
    out = " ".join(words)
    if rng.random() < 0.5:
        out = out.lower()
    return out.replace(",", "") if rng.random() < 0.5 else out + " !"


def baseline_signatures(texts: list[str], cfg: DedupConfig) -> np.ndarray:
    """The straightforward way: a MinHash per document, one update per shingle."""
    from datasketch import MinHash

    out = np.empty((len(texts), cfg.num_perm), dtype=np.uint32)
    for i, text in enumerate(texts):
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
        for sh in shingles(text, cfg.shingle, cfg.unit):
            m.update(sh.encode("utf-8"))
        out[i] = m.hashvalues
    return out


def find_pairs(sigs: np.ndarray, cfg: DedupConfig) -> set[tuple[int, int]]:
    """Greedy LSH pass (query, then insert): every (kept, duplicate) pair found."""
    index = NearDupIndex(cfg.threshold, cfg.num_perm, cfg.seed)
    pairs = set()
    for i in range(len(sigs)):
        hit = index.find(sigs[i])
        if hit is not None:
            pairs.add((hit[0], i))
        else:
            index.add(i, sigs[i])
    return pairs


def build(data: Path, n_docs: int, dup_share: float, cfg: DedupConfig, seed: int):
    rng = random.Random(seed)
    pool = passages(_texts(data), rng)
    seen, unique = set(), []
    for p in pool:
        k = exact_key(p)
        if k not in seen:
            seen.add(k)
            unique.append(p)
    # remove natural near duplicates from the base set, so that only the planted pairs are true ones
    sigs = Signer(cfg.num_perm, cfg.seed, cfg.shingle, cfg.unit).signatures(unique)
    natural = {j for _, j in find_pairs(sigs, cfg)}
    base = [p for i, p in enumerate(unique) if i not in natural]
    n_dup = int(n_docs * dup_share)
    n_base = n_docs - n_dup
    if len(base) < n_base:
        raise SystemExit(f"only {len(base)} distinct passages; ask for fewer --docs")
    base = rng.sample(base, n_base)
    vocab = [w for p in base[:2000] for w in p.split()]
    docs = list(base)
    truth = set()
    for j in rng.sample(range(n_base), n_dup):
        truth.add((j, len(docs)))
        docs.append(perturb(base[j], rng, vocab))
    order = list(range(len(docs)))
    rng.shuffle(order)
    where = {old: new for new, old in enumerate(order)}
    docs = [docs[i] for i in order]
    truth = {tuple(sorted((where[a], where[b]))) for a, b in truth}
    return docs, truth, len(natural)


def score(found: set[tuple[int, int]], truth: set[tuple[int, int]]) -> tuple[float, float]:
    found = {tuple(sorted(p)) for p in found}
    tp = len(found & truth)
    return (tp / len(found) if found else 1.0), (tp / len(truth) if truth else 1.0)


def run(method: str, docs: list[str], truth: set, cfg: DedupConfig) -> dict:
    t0 = time.perf_counter()
    if method == "baseline":
        sigs = baseline_signatures(docs, cfg)
    else:
        sigs = Signer(cfg.num_perm, cfg.seed, cfg.shingle, cfg.unit).signatures(docs)
    t1 = time.perf_counter()
    found = find_pairs(sigs, cfg)
    t2 = time.perf_counter()
    precision, recall = score(found, truth)
    return {"method": method, "sign_s": t1 - t0, "lsh_s": t2 - t1, "docs_per_s": len(docs) / (t2 - t0),
            "pairs_found": len(found), "precision": precision, "recall": recall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=50_000)
    ap.add_argument("--dup-share", type=float, default=0.4, help="share of documents that are planted copies")
    ap.add_argument("--data", default=os.environ.get("LIMA_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--unit", default="char", choices=["char", "word"])
    ap.add_argument("--shingle", type=int, default=5)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = DedupConfig(unit=args.unit, shingle=args.shingle, threshold=args.threshold, num_perm=args.num_perm)
    docs, truth, natural = build(Path(args.data), args.docs, args.dup_share, cfg, args.seed)
    words = sum(len(d.split()) for d in docs) / len(docs)
    print(f"{len(docs):,} documents (mean {words:.0f} words), {len(truth):,} planted duplicate pairs; "
          f"{natural:,} natural near duplicates removed from the base set first")
    print(f"config: unit={cfg.unit} shingle={cfg.shingle} num_perm={cfg.num_perm} threshold={cfg.threshold}")
    results = [run("ours", docs, truth, cfg), run("baseline", docs, truth, cfg)]
    for r in results:
        print(f"{r['method']:>9}: {r['docs_per_s']:9,.0f} docs/s  (signatures {r['sign_s']:6.1f} s, "
              f"LSH {r['lsh_s']:5.1f} s)  pairs {r['pairs_found']:,}  precision {r['precision']:.4f}  "
              f"recall {r['recall']:.4f}")
    ratio = results[0]["docs_per_s"] / results[1]["docs_per_s"]
    ok = ratio >= 3 and results[0]["recall"] >= 0.95
    print(f"throughput ratio ours/baseline: {ratio:.2f}x (target >= 3x at recall >= 0.95: "
          f"{'met' if ok else 'NOT met'})")


if __name__ == "__main__":
    main()
