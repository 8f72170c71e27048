"""Benchmark: the OpenAI-compatible server under 1, 8 and 32 concurrent clients on loopback, batched vs not.

Starts ``lima-align``'s server in a background thread on 127.0.0.1 (a free port) with smollm2-135m-instruct
and sends streaming chat completions with small ``max_tokens`` from N client threads. The load is bounded:
each client sends ``--requests-per-client`` requests (and stops at ``--max-seconds`` per level). Measures
requests/s, generated tokens/s, p50/p99 latency and p50 time to first token, for

- ``batched``: the server as shipped (worker collects requests for 10 ms, up to 32 rows per batch);
- ``unbatched``: the same model with batch size 1 (one request at a time, the baseline).

Prints one row per (mode, clients) and the batched/unbatched requests/s ratio.
Usage: ``python benchmarks/bench_server.py [--clients 1 8 32] [--max-tokens 16] [--requests-per-client 2]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from dataclasses import dataclass, field

import httpx
import torch

from lima_align.generate.engine import HFEngine
from lima_align.generate.loading import load_for_generation
from lima_align.generate.server import serve_in_thread

PROMPTS = ["List twenty animals, one per line:", "Continue this story: Once upon a time, in a small village",
           "Explain in detail how a car engine works, step by step.", "Write a poem about the sea."]


@dataclass
class Level:
    latencies: list[float] = field(default_factory=list)
    first_token: list[float] = field(default_factory=list)
    tokens: int = 0
    failures: int = 0
    seconds: float = 0.0


def one_request(client: httpx.Client, url: str, i: int, max_tokens: int, level: Level) -> None:
    body = {"model": "bench", "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
            "max_tokens": max_tokens, "seed": i, "stream": True, "stream_options": {"include_usage": True}}
    start, first = time.perf_counter(), None
    with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            level.failures += 1
            return
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - start
            if chunk.get("usage"):
                level.tokens += chunk["usage"]["completion_tokens"]
    level.latencies.append(time.perf_counter() - start)
    if first is not None:
        level.first_token.append(first)


def run_level(base_url: str, clients: int, per_client: int, max_tokens: int, max_seconds: float) -> Level:
    level, url = Level(), f"{base_url}/chat/completions"
    deadline = time.perf_counter() + max_seconds

    def client_loop(c: int) -> None:
        with httpx.Client(timeout=max_seconds) as client:
            for r in range(per_client):
                if time.perf_counter() > deadline:
                    return
                one_request(client, url, c * per_client + r, max_tokens, level)

    threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    level.seconds = time.perf_counter() - start
    return level


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_mode(engine: HFEngine, mode: str, args: argparse.Namespace) -> dict[int, float]:
    rps = {}
    with serve_in_thread(engine, served_name="bench", window_s=0.01) as server:
        one_request(httpx.Client(timeout=60), f"{server.base_url}/chat/completions", 0, 2, Level())  # warm-up
        for clients in args.clients:
            before = (server.worker.stats.batches, server.worker.stats.rows)
            level = run_level(server.base_url, clients, args.requests_per_client, args.max_tokens,
                              args.max_seconds)
            batches = server.worker.stats.batches - before[0]
            rows = server.worker.stats.rows - before[1]
            done = len(level.latencies)
            rps[clients] = done / level.seconds
            print(f"{mode:>9} {clients:>7} {done:>8} {level.failures:>5} {rps[clients]:>7.2f} "
                  f"{level.tokens / level.seconds:>7.1f} {percentile(level.latencies, 0.5):>7.2f} "
                  f"{percentile(level.latencies, 0.99):>7.2f} {percentile(level.first_token, 0.5):>8.2f} "
                  f"{rows / max(batches, 1):>9.1f}", flush=True)
    return rps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="per level")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unbatched run")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer, fmt = load_for_generation("smollm2-135m-instruct", add_eot=True)
    device = next(model.parameters()).device
    print(f"smollm2-135m-instruct on {device}, torch threads {torch.get_num_threads()}, "
          f"max_tokens {args.max_tokens}, {args.requests_per_client} requests per client")
    print(f"{'mode':>9} {'clients':>7} {'requests':>8} {'fail':>5} {'req/s':>7} {'tok/s':>7} {'p50 s':>7} "
          f"{'p99 s':>7} {'ttft50 s':>8} {'rows/batch':>9}")
    batched = bench_mode(HFEngine(model, tokenizer, fmt, batch_size=max(args.clients)), "batched", args)
    if args.no_baseline:
        return
    single = bench_mode(HFEngine(model, tokenizer, fmt, batch_size=1), "unbatched", args)
    for clients in args.clients:
        print(f"batched/unbatched requests/s at {clients:>2} clients: "
              f"{batched[clients] / max(single[clients], 1e-9):.2f}x")


if __name__ == "__main__":
    main()
