"""Judge throughput against an in-process OpenAI-compatible fake on loopback that answers instantly
(or after --latency-ms, to stand in for a real API's latency): judgments/s at concurrency 1 vs 32, then a
second run from the cache (target: 0 HTTP calls).

    python benchmarks/bench_judge.py [--items 300] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from lima_align.evaluate.judge_config import JudgeConfig
from lima_align.evaluate.judging import JudgeSetup, judge_single
from lima_align.evaluate.stub_server import Action, stub_server


def write_answers(path: Path, n: int) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"q{i}", "sample": 0, "conversations": [f"Question {i}?", f"Answer {i}."],
                                 "output": f"Answer {i}.", "generator": "bench"}) + "\n")
    return path


def run(server, answers: Path, out: Path, cache: Path, concurrency: int) -> dict:
    config = JudgeConfig(name="bench", model="fake", base_url=server.base_url, api_key_env="",
                         concurrency=concurrency, max_retries=0)
    calls_before = server.calls
    start = time.perf_counter()
    report = judge_single(JudgeSetup(config, cache), "likert", answers, out)
    seconds = time.perf_counter() - start
    return {"concurrency": concurrency, "judgments": report.written, "seconds": round(seconds, 3),
            "judgments_per_s": round(report.written / seconds, 1), "http_calls": server.calls - calls_before,
            "cache_hits": report.usage["cache_hits"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="fake server latency per call")
    args = parser.parse_args()
    delay = args.latency_ms / 1000

    with tempfile.TemporaryDirectory() as tmp, \
            stub_server(lambda body, n: Action(text="Reasoning.\n5\n5", delay_s=delay)) as server:
        tmp = Path(tmp)
        answers = write_answers(tmp / "answers.jsonl", args.items)
        results = [run(server, answers, tmp / f"c{c}.jsonl", tmp / f"cache{c}.sqlite", c) for c in (1, 32)]
        results.append({**run(server, answers, tmp / "from-cache.jsonl", tmp / "cache32.sqlite", 32),
                        "run": "second run from cache"})
    for r in results:
        print(json.dumps(r))
    speedup = results[1]["judgments_per_s"] / results[0]["judgments_per_s"]
    print(f"items={args.items} latency_ms={args.latency_ms}: concurrency 32 vs 1 = {speedup:.1f}x; "
          f"from cache: {results[2]['judgments_per_s']} judgments/s with {results[2]['http_calls']} HTTP calls")


if __name__ == "__main__":
    main()
