"""A lima-align checkpoint loads in plain ``vllm serve`` as it is: our chat template, EOT as the stop token from
its generation_config, resized embeddings; the paper's penalty over HTTP through our logits processor. Checked
with the OpenAI client against the HF engine's greedy answers on the same checkpoint."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from lima_align.chat_format import render
from lima_align.generate.decoding import SamplingConfig
from lima_align.generate.engine import HFEngine, Request
from lima_align.generate.loading import load_for_generation
from lima_align.models import load_tokenizer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoint(eot_checkpoint):
    return eot_checkpoint


@pytest.fixture(scope="module")
def server(vllm_installed, checkpoint):
    folder, _ = checkpoint
    port = _free_port()
    env = {**os.environ, "VLLM_USE_V2_MODEL_RUNNER": "0", "VLLM_CPU_KVCACHE_SPACE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    log = open(folder.parent / "vllm-serve.log", "w")
    # `vllm serve` itself, by module: vllm-cpu's `vllm` console script looks up a distribution named "vllm" and
    # stops (PackageNotFoundError) before parsing anything; the GPU build's does not
    proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
                             "--host", "127.0.0.1", "--port", str(port),
                             "--served-model-name", "lima", "--dtype", "float32", "--enforce-eager",
                             "--max-model-len", "512", "--logits-processors",
                             "lima_align.generate.vllm_penalty:GeneratedTokensPenalty"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    from openai import OpenAI

    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=60)
    deadline = time.time() + 300
    while True:
        try:
            client.models.list()
            break
        except Exception:  # noqa: BLE001 - not up yet
            if proc.poll() is not None or time.time() > deadline:
                log.flush()
                pytest.fail("vllm serve did not come up:\n" + (folder.parent / "vllm-serve.log").read_text()[-3000:])
            time.sleep(1)
    yield client
    os.killpg(proc.pid, 15)
    proc.wait(60)
    log.close()


def test_vllm_serve_answers_like_the_hf_engine_and_stops_at_eot(checkpoint, server):
    folder, prompts = checkpoint
    lm, tokenizer, fmt = load_for_generation(str(folder))
    hf = HFEngine(lm, tokenizer, fmt)
    eot = tokenizer.convert_tokens_to_ids(fmt.eot)
    config = SamplingConfig(temperature=0, max_new_tokens=120)
    expected = {c.key: c for c in hf.generate([Request(str(i), [p]) for i, p in enumerate(prompts)], config)}
    assert sum(c.finish_reason == "eot" for c in expected.values()) >= 3  # the model did learn to stop
    for i, prompt in enumerate(prompts):
        reply = server.chat.completions.create(
            model="lima", messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=120,
            extra_body={"vllm_xargs": {"lima_repetition_penalty": 1.2}, "skip_special_tokens": True})
        want = expected[str(i)]
        # the checkpoint's own chat template renders our prompt exactly (token count includes BOS)
        assert reply.usage.prompt_tokens == len(render([prompt], tokenizer, fmt, add_generation_prompt=True).input_ids)
        assert reply.choices[0].message.content == want.text
        assert reply.usage.completion_tokens == want.completion_tokens
        # stopped at EOT, read from generation_config.json: nobody passed a stop token
        assert reply.choices[0].finish_reason == ("stop" if want.finish_reason == "eot" else "length")
    assert eot == len(load_tokenizer("smollm2-135m-instruct"))  # the embeddings were grown for EOT


def test_the_penalty_over_http_is_ours_not_vllms(checkpoint, server):
    # the same request with vLLM's own penalty (prompt tokens too) and with ours (generated only) must match the
    # HF engine's corresponding scope
    folder, prompts = checkpoint
    lm, tokenizer, fmt = load_for_generation(str(folder))
    hf = HFEngine(lm, tokenizer, fmt)
    prompt = prompts[0]
    texts = {}
    for scope in ("generated", "all"):
        config = SamplingConfig(temperature=0, max_new_tokens=30, repetition_penalty=3.0, penalty_scope=scope)
        texts[scope] = next(iter(hf.generate([Request("x", [prompt])], config))).text
        body = ({"vllm_xargs": {"lima_repetition_penalty": 3.0}} if scope == "generated"
                else {"repetition_penalty": 3.0})
        reply = server.chat.completions.create(model="lima", messages=[{"role": "user", "content": prompt}],
                                               temperature=0, max_tokens=30, extra_body=body)
        assert reply.choices[0].message.content == texts[scope], scope
    assert texts["generated"] != texts["all"]


def test_a_vllm_served_judge_gives_weighted_verdicts_from_the_models_own_logprobs(checkpoint, server):
    # the judge path arena-hard / alpaca_eval users run: our HTTP judge client in weighted mode against vLLM; the
    # first-token log-probabilities it reads are the model's (checked against the checkpoint under transformers)
    import asyncio

    from lima_align.evaluate.judge_config import JudgeConfig, build_client

    folder, prompts = checkpoint
    config = JudgeConfig(name="vllm-judge", kind="openai", model="lima", base_url=str(server.base_url),
                         api_key_env="", mode="weighted", top_logprobs=5, max_retries=0)
    messages = [{"role": "user", "content": prompts[1]}]
    reply = asyncio.run(build_client(config).complete(messages, config.params(candidates=("A", "B"))))
    assert reply.error is None and 5 <= len(reply.logprobs) <= 6, reply
    lm, tokenizer, fmt = load_for_generation(str(folder))
    ids = render([prompts[1]], tokenizer, fmt, add_generation_prompt=True).input_ids
    with torch.inference_mode():
        logprobs = lm(input_ids=torch.tensor([ids])).logits[0, -1].float().log_softmax(-1)
    top = logprobs.topk(5)
    for lp, token in zip(top.values.tolist(), top.indices.tolist()):
        text = tokenizer.decode([token])
        assert abs(reply.logprobs[text] - lp) < 1e-3, text
