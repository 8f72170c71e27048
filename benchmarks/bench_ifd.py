"""IFD scoring cost: N real candidates (the LIMA training file) scored by the 135M built-in scorer on this machine.

Three measurements in one run, all through :func:`lima_align.curate.scoring.ifd_scores` (the code ``lima-align
mix strategy=ifd`` runs):

- baseline: the first ``--baseline`` candidates scored one sequence per forward pass (``batch_tokens`` =
  ``max_tokens``: no batching);
- ours: all N candidates batched (length-sorted, ``--batch-tokens`` padded tokens per pass), into a fresh cache;
- re-mix: the same N again from the cache (what a second mix, another strategy setting or another ablation arm
  costs).

Prints seconds, candidates/s and scored tokens/s for each, the batched/unbatched throughput ratio, and the
seconds per 1,000 candidates (the README's figure). The LIMA rows are long (a median answer of ~400 tokens), so
this is close to the worst case of a real pool at ``--max-tokens``.
Run: python benchmarks/bench_ifd.py [--n 1000] [--max-tokens 256] [--scorer smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from lima_align.curate.scoring import IFDScorer, ScoringConfig, ifd_scores
from lima_align.formats.rows import read_examples

REPO = Path(__file__).resolve().parents[1]


def _run(examples, cfg: ScoringConfig, scorer: IFDScorer) -> tuple[float, int]:
    t0 = time.perf_counter()
    scores = ifd_scores(examples, cfg, lambda: scorer, print)
    return time.perf_counter() - t0, sum(s.tokens for s in scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--baseline", type=int, default=40, help="candidates scored unbatched (the baseline)")
    parser.add_argument("--max-tokens", type=int, default=ScoringConfig.max_tokens)
    parser.add_argument("--batch-tokens", type=int, default=ScoringConfig.batch_tokens)
    parser.add_argument("--scorer", default=ScoringConfig.scorer)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    examples = read_examples(args.data / "lima" / "lima_train_instruction_response.jsonl")[:args.n]
    print(f"{len(examples)} candidates, scorer {args.scorer}, max_tokens {args.max_tokens}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    scorer = IFDScorer.load(args.scorer, args.max_tokens, args.batch_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        base_cfg = ScoringConfig(scorer=args.scorer, max_tokens=args.max_tokens, batch_tokens=args.max_tokens,
                                 cache_dir=f"{tmp}/baseline")
        unbatched = IFDScorer(scorer.model, scorer.tokenizer, args.max_tokens, args.max_tokens)
        b_s, b_tok = _run(examples[:args.baseline], base_cfg, unbatched)
        cfg = ScoringConfig(scorer=args.scorer, max_tokens=args.max_tokens, batch_tokens=args.batch_tokens,
                            cache_dir=f"{tmp}/ours")
        o_s, o_tok = _run(examples, cfg, scorer)
        c_s, _ = _run(examples, cfg, scorer)
    print(f"baseline (unbatched, {args.baseline} candidates): {b_s:.1f} s, {args.baseline / b_s:.2f} cand/s, "
          f"{b_tok / b_s:.0f} answer tok/s")
    print(f"ours (batched, {len(examples)} candidates): {o_s:.1f} s, {len(examples) / o_s:.2f} cand/s, "
          f"{o_tok / o_s:.0f} answer tok/s")
    print(f"throughput ratio batched / unbatched: {(len(examples) / o_s) / (args.baseline / b_s):.2f}x")
    print(f"re-mix from the cache: {c_s:.2f} s ({o_s / max(c_s, 1e-9):.0f}x faster than scoring)")
    print(f"seconds per 1,000 candidates: {1000 * o_s / len(examples):.0f} "
          f"({1000 * o_s / len(examples) / 60:.1f} min); load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
