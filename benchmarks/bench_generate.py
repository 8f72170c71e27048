"""Generation throughput: the batched engine vs a one-prompt-at-a-time ``model.generate`` loop, same run.

Both decode the same prompts with the paper's sampling (temperature 0.7, top-p 0.9, repetition penalty 1.2 on
generated tokens) and stop at EOT/EOS or the token cap. Prints generated tokens/s of each and their ratio
(target >= 4x at 300 prompts x 5 samples).

``--engine vllm``: vLLM (with our generated-only penalty processor) against our batched HF engine instead, same
prompts, sampling and token budget, one after the other in this run; vLLM's start-up is timed apart.

    .venv/bin/python benchmarks/bench_generate.py                      # quick CPU run (60 x 5, 32 tokens)
    .venv/bin/python benchmarks/bench_generate.py --prompts 300 --samples 5 --max-new-tokens 64
    .venv/bin/python benchmarks/bench_generate.py --engine vllm --prompts 40 --samples 5 --max-new-tokens 32
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from transformers import LogitsProcessorList

from lima_align.formats.rows import read_examples
from lima_align.generate.engine import HFEngine, Request
from lima_align.generate.loading import load_for_generation
from lima_align.generate.decoding import GeneratedTokensRepetitionPenalty, SamplingConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def one_at_a_time(engine: HFEngine, requests: list[Request], config: SamplingConfig) -> int:
    """The baseline: one ``model.generate`` call per (prompt, sample)."""
    tokens = 0
    for req in requests:
        ids = torch.tensor([engine.prompt_ids(req.turns)], device=engine.device)
        torch.manual_seed(hash((req.key, req.sample)) & 0xFFFF)
        out = engine.model.generate(
            ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=config.temperature,
            top_p=config.top_p, top_k=0, max_new_tokens=config.max_new_tokens,
            eos_token_id=sorted(engine.stop_ids), pad_token_id=engine.pad_id,
            logits_processor=LogitsProcessorList([GeneratedTokensRepetitionPenalty(
                config.repetition_penalty, ids.shape[1])]))
        tokens += out.shape[1] - ids.shape[1]
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts-file", default=str(DATA / "eval/alpaca_eval/text_davinci_003_model_outputs.json"))
    parser.add_argument("--prompts", type=int, default=60)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--baseline-prompts", type=int, default=None,
                        help="run the slow baseline on fewer prompts (tokens/s is compared, not totals)")
    parser.add_argument("--engine", choices=("hf", "vllm"), default="hf",
                        help="vllm: compare vLLM with the batched HF engine (default: HF batched vs one at a time)")
    parser.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=None,
                        help="vLLM without torch.compile / CUDA graphs (default: eager on CPU, compiled on GPU)")
    args = parser.parse_args()
    if args.engine == "vllm":
        return vllm_vs_hf(args)

    model, tokenizer, fmt = load_for_generation(args.model, add_eot=True)
    engine = HFEngine(model, tokenizer, fmt, batch_size=args.batch_size)
    examples = read_examples(args.prompts_file)[: args.prompts]
    requests = [Request(ex.id, [ex.prompt], s) for ex in examples for s in range(args.samples)]
    config = SamplingConfig(max_new_tokens=args.max_new_tokens)
    torch.set_num_threads(torch.get_num_threads())

    start = time.perf_counter()
    batched_tokens = sum(c.completion_tokens for c in engine.generate(requests, config))
    batched_s = time.perf_counter() - start

    base_requests = requests[: (args.baseline_prompts or args.prompts) * args.samples]
    start = time.perf_counter()
    base_tokens = one_at_a_time(engine, base_requests, config)
    base_s = time.perf_counter() - start

    batched_tps, base_tps = batched_tokens / batched_s, base_tokens / base_s
    print(f"model {args.model}, {len(examples)} prompts x {args.samples} samples, <= {args.max_new_tokens} "
          f"new tokens, device {engine.device}")
    print(f"batched engine     : {batched_tokens:7d} tokens in {batched_s:7.1f} s = {batched_tps:8.1f} tokens/s")
    print(f"one at a time      : {base_tokens:7d} tokens in {base_s:7.1f} s = {base_tps:8.1f} tokens/s "
          f"({len(base_requests)} generations)")
    print(f"ratio batched / one-at-a-time: {batched_tps / base_tps:.2f}x (target >= 4x)")


def vllm_vs_hf(args: argparse.Namespace) -> None:
    """vLLM's tokens/s over our batched HF engine's on the same requests (vLLM's start-up reported apart), then
    how many prompts the two answer with the same tokens under greedy decoding."""
    from lima_align.generate.engines import EngineOptions
    from lima_align.generate.vllm_engine import VLLMEngine

    examples = read_examples(args.prompts_file)[: args.prompts]
    requests = [Request(ex.id, [ex.prompt], s) for ex in examples for s in range(args.samples)]
    config = SamplingConfig(max_new_tokens=args.max_new_tokens)
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=args.max_new_tokens)
    firsts = [r for r in requests if r.sample == 0]
    start = time.perf_counter()
    vllm_engine = VLLMEngine(args.model, EngineOptions(name="vllm", enforce_eager=args.enforce_eager), add_eot=True)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    vllm_tokens = sum(c.completion_tokens for c in vllm_engine.generate(requests, config))
    vllm_s = time.perf_counter() - start
    vllm_greedy = {c.key: c.token_ids for c in vllm_engine.generate(firsts, greedy)}
    vllm_engine.close()
    model, tokenizer, fmt = load_for_generation(args.model, add_eot=True)
    engine = HFEngine(model, tokenizer, fmt, batch_size=args.batch_size)
    start = time.perf_counter()
    hf_tokens = sum(c.completion_tokens for c in engine.generate(requests, config))
    hf_s = time.perf_counter() - start
    hf_greedy = {c.key: c.token_ids for c in engine.generate(firsts, greedy)}
    vllm_tps, hf_tps = vllm_tokens / vllm_s, hf_tokens / hf_s
    print(f"model {args.model}, {len(examples)} prompts x {args.samples} samples, <= {args.max_new_tokens} "
          f"new tokens, device {engine.device}; LIMA sampling in both")
    print(f"vLLM               : {vllm_tokens:7d} tokens in {vllm_s:7.1f} s = {vllm_tps:8.1f} tokens/s "
          f"(+ {load_s:.1f} s to start)")
    print(f"HF batched engine  : {hf_tokens:7d} tokens in {hf_s:7.1f} s = {hf_tps:8.1f} tokens/s "
          f"(batch {args.batch_size})")
    print(f"ratio vLLM / HF engine: {vllm_tps / hf_tps:.2f}x")
    differ = [k for k in hf_greedy if hf_greedy[k] != vllm_greedy[k]]
    print(f"greedy (penalty on), same tokens in both engines: {len(hf_greedy) - len(differ)} of {len(hf_greedy)} "
          f"prompts")
    for key in differ:
        a, b = hf_greedy[key], vllm_greedy[key]
        at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        print(f"  {key}: first differs at token {at} of {max(len(a), len(b))}")


if __name__ == "__main__":
    main()
