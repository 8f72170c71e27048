"""The vLLM engine on CPU: the paper's penalty as a vLLM logits processor, the same greedy tokens as our HF engine,
the sampling contract (seeds per (prompt, sample), stop tokens, token budget), and a killed ``lima-align generate
--engine vllm`` run resumed - by a data parallel pair of engines - without a row lost or duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lima_align.generate.decoding import SamplingConfig, apply_repetition_penalty, row_seed
from lima_align.generate.engine import HFEngine, Request
from lima_align.generate.engines import EngineOptions
from lima_align.generate.loading import load_for_generation

MODEL = "smollm2-135m-instruct"
PROMPTS = ["What is the capital of France?", "Write a haiku about rain.", "List three prime numbers.",
           "Explain recursion to a child.", "Repeat after me: banana banana banana banana banana"]
OPTIONS = EngineOptions(name="vllm", enforce_eager=True, max_model_len=512, cpu_kv_cache_gib=0.5)


@pytest.fixture(scope="module")
def engines(vllm_installed):
    from lima_align.generate.vllm_engine import VLLMEngine

    vllm_engine = VLLMEngine(MODEL, OPTIONS, add_eot=True)
    lm, tokenizer, fmt = load_for_generation(MODEL, add_eot=True)
    yield vllm_engine, HFEngine(lm, tokenizer, fmt, batch_size=8)
    vllm_engine.close()


def _by_index(completions):
    return sorted(completions, key=lambda c: c.index)


# ------------------------------------------------------------------------------ the logits processor alone
def test_the_processor_penalises_each_rows_generated_tokens_through_batch_moves(vllm_installed):
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

    from lima_align.generate.vllm_penalty import PENALTY_ARG, GeneratedTokensPenalty

    proc = GeneratedTokensPenalty(None, torch.device("cpu"), False)
    out0, out1, out2 = [3], [1, 1], [4]  # live output lists: vLLM appends to them in place
    params = lambda p: SamplingParams(extra_args={PENALTY_ARG: p})  # noqa: E731
    proc.update_state(BatchUpdate(3, removed=[], moved=[], added=[(0, params(2.0), [0, 1, 2], out0),
                                                                     (1, params(1.5), [3, 4], out1),
                                                                     (2, params(1.0), [0], out2)]))
    logits = torch.tensor([[1.0, -1.0, 2.0, 4.0, -2.0]] * 3)
    got = proc.apply(logits.clone())
    # by hand: row 0 penalises token 3 only (prompt tokens 0-2 untouched): 4 / 2; row 1 token 1: -1 * 1.5;
    # row 2 asked for no penalty
    assert got.tolist() == [[1.0, -1.0, 2.0, 2.0, -2.0], [1.0, -1.5, 2.0, 4.0, -2.0], [1.0, -1.0, 2.0, 4.0, -2.0]]
    out0.append(4)  # a token generated since: seen at the next step without any batch update
    proc.update_state(None)
    assert proc.apply(logits.clone())[0].tolist() == [1.0, -1.0, 2.0, 2.0, -4.0]
    # row 1 leaves, row 0 swaps with row 2, the request at 2 (formerly row 0) moves to 1
    proc.update_state(BatchUpdate(2, removed=[1], added=[], moved=[(0, 2, MoveDirectionality.SWAP),
                                                                    (2, 1, MoveDirectionality.UNIDIRECTIONAL)]))
    got = proc.apply(logits[:2].clone())
    assert got.tolist() == [[1.0, -1.0, 2.0, 4.0, -2.0], [1.0, -1.0, 2.0, 2.0, -4.0]]
    seen = torch.zeros(1, 5, dtype=torch.bool)
    seen[0, [3, 4]] = True
    assert got[1].tolist() == apply_repetition_penalty(logits[:1], seen, 2.0)[0].tolist()  # the HF engine's rule
    with pytest.raises(ValueError, match=PENALTY_ARG):
        GeneratedTokensPenalty.validate_params(params(-1.0))


# ----------------------------------------------------------------------------------- against our HF engine
@pytest.mark.parametrize("scope", ["generated", "all"])
def test_greedy_tokens_are_the_hf_engines_for_each_penalty_scope(engines, scope):
    vllm_engine, hf_engine = engines
    config = SamplingConfig(temperature=0, max_new_tokens=24, penalty_scope=scope)
    requests = [Request(f"p{i}", [p]) for i, p in enumerate(PROMPTS)]
    ours, theirs = _by_index(vllm_engine.generate(requests, config)), _by_index(hf_engine.generate(requests, config))
    for v, h in zip(ours, theirs):
        assert (v.token_ids, v.text, v.finish_reason, v.prompt_tokens) == (h.token_ids, h.text, h.finish_reason,
                                                                           h.prompt_tokens), v.key
    assert {c.finish_reason for c in ours} >= {"length"}


def test_prompt_tokens_are_not_penalised(engines):
    # the prompt ends on a word the model repeats: the paper's penalty (generated tokens only) leaves the first
    # answer token alone, vLLM's own (prompt too) pushes it away
    vllm_engine, _ = engines
    request = [Request("banana", [PROMPTS[-1]])]
    first = {}
    for name, config in {"none": SamplingConfig(temperature=0, repetition_penalty=1.0, max_new_tokens=3),
                         "generated": SamplingConfig(temperature=0, max_new_tokens=3),
                         "all": SamplingConfig(temperature=0, max_new_tokens=3, penalty_scope="all")}.items():
        first[name] = next(iter(vllm_engine.generate(request, config))).token_ids[0]
    banana = vllm_engine.tokenizer.encode(" banana", add_special_tokens=False)[0]
    assert first["none"] == first["generated"] == banana
    assert first["all"] != banana


def test_sampling_is_seeded_per_prompt_and_sample_and_keeps_the_stop_and_length_contract(engines):
    vllm_engine, _ = engines
    config = SamplingConfig(max_new_tokens=12, seed=3)
    requests = [Request(f"p{i}", [p], s) for i, p in enumerate(PROMPTS) for s in range(2)]
    forward = {(c.key, c.sample): c for c in vllm_engine.generate(requests, config)}
    backward = {(c.key, c.sample): c for c in vllm_engine.generate(requests[::-1][:4], config)}
    for key, c in backward.items():  # another batch, another order: the same draws
        assert c.token_ids == forward[key].token_ids
    assert len({tuple(c.token_ids) for c in forward.values()}) > len(PROMPTS)  # samples of a prompt differ
    eot, eos = vllm_engine.eot_id, vllm_engine.tokenizer.eos_token_id
    for (key, sample), c in forward.items():
        assert c.seed == row_seed(3, key, sample)
        assert 1 <= c.completion_tokens == len(c.token_ids) <= 12
        assert eot not in c.token_ids[:-1] and eos not in c.token_ids[:-1]  # nothing after a stop token
        if c.finish_reason == "length":
            assert c.completion_tokens == 12
        else:
            assert c.token_ids[-1] == {"eot": eot, "eos": eos}[c.finish_reason]
        assert c.text == vllm_engine.tokenizer.decode(c.token_ids[:-1] if c.finish_reason != "length"
                                                      else c.token_ids, skip_special_tokens=True)
    too_long = next(iter(vllm_engine.generate([Request("long", ["word " * 600])], config)))
    assert too_long.finish_reason == "error" and "context is 512" in too_long.error


def test_a_call_abandoned_midway_leaves_nothing_behind_for_the_next(engines):
    vllm_engine, _ = engines
    config = SamplingConfig(temperature=0, max_new_tokens=16)
    requests = [Request(f"p{i}", [p]) for i, p in enumerate(PROMPTS)]
    running = vllm_engine.generate(requests, config)
    next(running)
    running.close()  # the writer died after one row: the other requests are aborted, not left decoding
    assert not vllm_engine.llm.llm_engine.has_unfinished_requests()
    again = _by_index(vllm_engine.generate(requests, config))
    assert [c.key for c in again] == [r.key for r in requests]
    assert again == _by_index(vllm_engine.generate(requests, config))


def test_stop_strings_on_a_raw_prompt_cut_where_the_hf_engine_cuts(engines):
    """vLLM is given token ids and never detokenizes, so the engine looks for stop strings itself: a request that
    meets one is aborted at once, with the HF engine's text and tokens."""
    vllm_engine, hf_engine = engines
    config = SamplingConfig(temperature=0, max_new_tokens=24)
    prompt = "Here is a list of fruits:\n1."
    (plain,) = hf_engine.generate([Request("raw", [], prompt=prompt)], config)
    stop = "\n3."  # the list's third item: the greedy continuation reaches it (checked next)
    assert stop in plain.text and plain.finish_reason == "length"
    stopped = [Request("raw", [], prompt=prompt, stop=(stop,)), Request("other", [PROMPTS[0]])]
    ours, theirs = _by_index(vllm_engine.generate(stopped, config)), _by_index(hf_engine.generate(stopped, config))
    for v, h in zip(ours, theirs):
        assert (v.token_ids, v.text, v.finish_reason, v.prompt_tokens) == (h.token_ids, h.text, h.finish_reason,
                                                                           h.prompt_tokens), v.key
    assert ours[0].finish_reason == "stop" and ours[0].text == plain.text[:plain.text.index(stop)]
    assert ours[0].completion_tokens < plain.completion_tokens and ours[1].finish_reason != "stop"
    assert not vllm_engine.llm.llm_engine.has_unfinished_requests()


def test_a_model_without_eot_is_refused_unless_asked(vllm_installed):
    from lima_align.errors import LimaError
    from lima_align.generate.vllm_engine import vllm_folder
    from lima_align.models import resolve_model

    with pytest.raises(LimaError, match="--add-eot"):
        vllm_folder(MODEL)
    folder, tokenizer, fmt = vllm_folder(MODEL, allow_no_eot=True)  # in-context prompts need no EOT: as it is
    assert folder == resolve_model(MODEL) and fmt.eot not in tokenizer.get_vocab()


# ------------------------------------------------------------------------- the CLI, killed and resumed
def _cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([str(Path(sys.executable).parent / "lima-align"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)


@pytest.mark.slow  # three vLLM engine starts, ~230 s on 2 cores; generate's resume (test_batch.py) stays in the default run
def test_generate_killed_then_resumed_by_two_engines_loses_and_duplicates_nothing(engines, tmp_path):
    vllm_engine, _ = engines
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "conversations": [f"{p} (take {i})"]}) + "\n"
                               for i, p in enumerate(PROMPTS * 3)))
    out = tmp_path / "answers.jsonl"
    common = ["generate", "--engine", "vllm", "--model", MODEL, "--add-eot", "--prompts", str(prompts), "--out",
              str(out), "--samples", "2", "--temperature", "0", "--max-new-tokens", "48", "--max-model-len", "512",
              "--enforce-eager", "--cpu-kv-cache-gib", "0.5"]
    first = _cli(*common)
    deadline = time.time() + 240
    while time.time() < deadline and first.poll() is None:
        if out.exists() and len(out.read_text().splitlines()) >= 3:
            os.killpg(first.pid, signal.SIGKILL)  # the CLI and vLLM's engine processes
            break
        time.sleep(0.05)
    first.wait(30)
    kept = out.read_text().splitlines()
    assert first.returncode == -signal.SIGKILL and 3 <= len(kept) < 30, (first.returncode, len(kept))
    second = _cli(*common, "--data-parallel-size", "2")
    log = second.communicate(timeout=300)[0]
    assert second.returncode == 0, log[-3000:]
    lines = out.read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert lines[:len(kept)] == kept  # finished work untouched
    assert sorted((r["id"], r["sample"]) for r in rows) == sorted((f"q{i}", s) for i in range(15) for s in range(2))
    report = json.loads(next(line for line in log.splitlines()[::-1] if line.startswith('{"prompts"')))
    assert report["already_done"] == len(kept) and report["written"] == 30 - len(kept)
    # greedy: each row is the in-process engine's answer to the same prompt, whichever engine wrote it
    requests = [Request(r["id"], r["conversations"][:1], r["sample"]) for r in rows]
    config = SamplingConfig(temperature=0, max_new_tokens=48)
    expected = {(c.key, c.sample): c.text for c in vllm_engine.generate(requests, config)}
    assert {(r["id"], r["sample"]): r["output"] for r in rows} == expected


# ------------------------------------------------------------------------------------- options, no engine
def test_engine_options_become_vllm_arguments_and_bad_ones_are_refused():
    from lima_align.generate.vllm_engine import llm_kwargs

    cpu = llm_kwargs(EngineOptions(name="vllm"), "cpu")
    # on a CPU: fp32 like the HF engine, eager (torch.compile tripled the start here for no faster decoding), and a
    # bounded KV cache instead of vLLM's "most of the RAM"
    assert cpu == {"dtype": "float32", "tensor_parallel_size": 1, "enforce_eager": True,
                   "kv_cache_memory_bytes": 4 << 30}
    chosen = llm_kwargs(EngineOptions(name="vllm", enforce_eager=False, dtype="bfloat16", max_model_len=4096,
                                      tensor_parallel_size=4, cpu_kv_cache_gib=0.5), "cpu")
    assert chosen == {"dtype": "bfloat16", "tensor_parallel_size": 4, "enforce_eager": False,
                      "kv_cache_memory_bytes": 1 << 29, "max_model_len": 4096}
    for bad in ({"name": "tgi"}, {"tensor_parallel_size": 0}, {"data_parallel_size": 0},
                {"gpu_memory_utilization": 1.5}, {"cpu_kv_cache_gib": 0}, {"max_model_len": 1}):
        with pytest.raises(ValueError):
            EngineOptions(**bad)


def test_the_cli_refuses_bad_engine_options_before_loading_anything(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "a", "conversations": ["hi"]}) + "\n")
    done = subprocess.run([str(Path(sys.executable).parent / "lima-align"), "generate", "--engine", "vllm",
                           "--model", str(tmp_path / "nowhere"), "--prompts", str(prompts), "--out",
                           str(tmp_path / "o.jsonl"), "--data-parallel-size", "0"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "data_parallel_size must be >= 1" in done.stderr
    assert not (tmp_path / "o.jsonl").exists()
