"""``lima-align generate``: sample answers for a file of prompts with the paper's decoding settings."""

from __future__ import annotations

import argparse
import json
import sys

from lima_align.generate.decoding import SCOPES, SamplingConfig

_DEFAULTS = SamplingConfig()


def add_sampling_options(parser: argparse.ArgumentParser) -> None:
    """Decoding options shared by generate, chat and serve; defaults are the paper's."""
    g = parser.add_argument_group("sampling (defaults: the LIMA paper)")
    g.add_argument("--temperature", type=float, default=_DEFAULTS.temperature,
                   help="0 = greedy (default %(default)s)")
    g.add_argument("--top-p", type=float, default=_DEFAULTS.top_p, help="nucleus p (default %(default)s)")
    g.add_argument("--repetition-penalty", type=float, default=_DEFAULTS.repetition_penalty,
                   help="Keskar et al. penalty (default %(default)s)")
    g.add_argument("--penalty-scope", choices=SCOPES, default=_DEFAULTS.penalty_scope,
                   help="penalise generated tokens only (the paper) or prompt tokens too, as transformers and "
                        "vLLM do (default %(default)s)")
    g.add_argument("--max-new-tokens", type=int, default=_DEFAULTS.max_new_tokens,
                   help="default %(default)s")
    g.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="default %(default)s")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="checkpoint folder, built-in name (gemma-3-270m, smollm2-135m-instruct) or hub id")
    parser.add_argument("--add-eot", action="store_true",
                        help="add the EOT token to a model that lacks it (a base model before tuning)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """--engine and vLLM's scale knobs, shared by generate and select."""
    from lima_align.generate.engines import ENGINES, EngineOptions

    d = EngineOptions()
    g = parser.add_argument_group("engine (vLLM's options are ignored by hf)")
    g.add_argument("--engine", choices=ENGINES, default=d.name,
                   help="hf: our transformers engine; vllm: vLLM with the paper's sampling (default %(default)s)")
    g.add_argument("--tensor-parallel-size", type=int, default=d.tensor_parallel_size,
                   help="GPUs one model is split over (default %(default)s)")
    g.add_argument("--data-parallel-size", type=int, default=d.data_parallel_size,
                   help="independent vLLM engines, each on its own GPU(s), rows dealt out (default %(default)s)")
    g.add_argument("--gpu-memory-utilization", type=float, default=d.gpu_memory_utilization,
                   help="share of each GPU's memory vLLM may take (default %(default)s)")
    g.add_argument("--max-model-len", type=int, help="prompt + answer tokens (default: the model's context)")
    g.add_argument("--dtype", help="float32, bfloat16, float16 (default: float32 on CPU, bfloat16 on GPU)")
    g.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=None,
                   help="no torch.compile / CUDA graphs: a faster start (default: eager on CPU, compiled on GPU)")
    g.add_argument("--cpu-kv-cache-gib", type=float, default=d.cpu_kv_cache_gib,
                   help="on a CPU: vLLM's KV cache in GiB (default %(default)s)")


def engine_options_from_args(args: argparse.Namespace):
    from lima_align.errors import LimaError
    from lima_align.generate.engines import EngineOptions

    try:
        return EngineOptions(args.engine, args.tensor_parallel_size, args.data_parallel_size,
                             args.gpu_memory_utilization, args.max_model_len, args.dtype, args.enforce_eager,
                             args.cpu_kv_cache_gib)
    except ValueError as exc:
        raise LimaError(str(exc)) from None


def engine_from_args(args: argparse.Namespace, batch_size: int = 1):
    """The engine of ``--model`` (with its saved chat format) on ``--device``."""
    from lima_align.generate.engine import HFEngine
    from lima_align.generate.loading import load_for_generation

    model, tokenizer, fmt = load_for_generation(args.model, add_eot=args.add_eot, device=args.device)
    return HFEngine(model, tokenizer, fmt, batch_size=batch_size)


def sampling_from_args(args: argparse.Namespace) -> SamplingConfig:
    from lima_align.errors import LimaError

    try:
        return SamplingConfig(temperature=args.temperature, top_p=args.top_p,
                              repetition_penalty=args.repetition_penalty, penalty_scope=args.penalty_scope,
                              max_new_tokens=args.max_new_tokens, seed=args.seed)
    except ValueError as exc:
        raise LimaError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("generate", help="sample answers for a file of prompts (resumable)",
                            description="Generate N answers per prompt with LIMA sampling into a JSONL file. "
                                        "Re-running skips the rows already written.")
    add_model_options(parser)
    parser.add_argument("--prompts", required=True,
                        help="prompts or conversations in any format `lima-align data` reads")
    parser.add_argument("--out", required=True, help="output JSONL (appended to; resumable)")
    parser.add_argument("--samples", type=int, default=1, help="answers per prompt (the ablations use 5)")
    parser.add_argument("--batch-size", type=int, default=16, help="rows decoded together (default %(default)s)")
    parser.add_argument("--name", help="generator name written in each row (default: the --model value)")
    parser.add_argument("--icl", metavar="FILE",
                        help="answer in context, with no tuning: an untuned base model reads FILE's preamble and "
                             "example conversations (e.g. configs/icl/urial-style-3.yaml) before each prompt and "
                             "stops where the next turn would begin; the model needs no EOT token")
    add_sampling_options(parser)
    add_engine_options(parser)
    parser.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    from lima_align.generate.batch import answer_prompts

    config = sampling_from_args(args)
    engine_options_from_args(args)  # bad engine options fail before the model loads

    def progress(done: int, total: int) -> None:
        print(f"\rgenerated {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    report = answer_prompts(args.model, args.prompts, args.out, config, samples=args.samples,
                            generator=args.name or args.model, batch_size=args.batch_size, device=args.device,
                            add_eot=args.add_eot, engine=engine_options_from_args(args), progress=progress,
                            icl=args.icl)
    print(json.dumps(report.to_dict()), file=sys.stderr)
    return 1 if report.errors else 0
