"""The local judge on vLLM (``engine: {name: vllm}``): the HF local judge's prompts, greedy replies and weighted
log-probabilities, for concurrent calls batched in one engine."""

import asyncio

import pytest

from lima_align.evaluate.clients import CallParams
from lima_align.evaluate.judge_config import JudgeConfig, build_client
from lima_align.evaluate.local import LocalJudge
from lima_align.evaluate.parsers import choice_probs
from lima_align.evaluate.templates import load_template
from lima_align.generate.engines import EngineOptions

JUDGE = "smollm2-135m-instruct"
CHOICES = {"A": "A", "B": "B", "tie": "C"}
QUESTIONS = [("What is the capital of France?", "Paris.", "I don't know."),
             ("How many legs has a spider?", "Six.", "Eight."),
             ("Name a prime number.", "Nine.", "Seven."),
             ("What colour is the sky on a clear day?", "Blue.", "Green.")]


@pytest.fixture(scope="module")
def judges(vllm_installed):
    config = JudgeConfig(name="vllm-local", kind="local", model=JUDGE, device="cpu",
                         engine=EngineOptions(name="vllm", enforce_eager=True, max_model_len=1024,
                                              cpu_kv_cache_gib=0.5))
    vllm_judge = build_client(config)
    yield vllm_judge, LocalJudge.load(JUDGE, device="cpu")
    vllm_judge.close()


def _messages(question, a, b, template="pairwise-weighted"):
    return [{"role": "user", "content": load_template(template).render(question=question, answer_a=a, answer_b=b)}]


def test_concurrent_weighted_calls_give_the_hf_judges_logprobs(judges):
    vllm_judge, hf_judge = judges
    params = CallParams(max_tokens=1, top_logprobs=5, candidates=("A", "B", "C"))
    calls = [_messages(*q) for q in QUESTIONS] * 2  # 8 calls in flight at once, in one engine

    async def all_at_once():
        return await asyncio.gather(*(vllm_judge.complete(m, params) for m in calls))

    replies = asyncio.run(all_at_once())
    for messages, reply in zip(calls, replies):
        expected = asyncio.run(hf_judge.complete(messages, params))
        assert reply.error is None and reply.text == expected.text
        spellings = {t for t in expected.logprobs if t.strip() in ("A", "B", "C")}
        assert {"A", " A", "B", " B", "C", " C"} <= spellings
        assert set(reply.logprobs) == spellings | {expected.text}  # every spelling, and the most likely token
        for text in reply.logprobs:
            assert reply.logprobs[text] == pytest.approx(expected.logprobs[text], abs=2e-3), text
        assert choice_probs(reply.logprobs, CHOICES) == pytest.approx(choice_probs(expected.logprobs, CHOICES),
                                                                      abs=1e-3)
    assert replies[0].logprobs == replies[4].logprobs  # the same call twice in one batch: the same answer


def test_greedy_replies_are_the_hf_judges_and_stop_at_the_end_of_turn(judges):
    vllm_judge, hf_judge = judges
    params = CallParams(temperature=0.0, max_tokens=40)

    async def all_at_once():
        return await asyncio.gather(*(vllm_judge.complete(_messages(*q, "pairwise"), params) for q in QUESTIONS))

    for q, reply in zip(QUESTIONS, asyncio.run(all_at_once())):
        expected = asyncio.run(hf_judge.complete(_messages(*q, "pairwise"), params))
        assert (reply.text, reply.prompt_tokens, reply.completion_tokens) == (
            expected.text, expected.prompt_tokens, expected.completion_tokens)


def test_vllm_is_for_the_local_kind_only():
    with pytest.raises(ValueError, match="kind: local"):
        JudgeConfig(kind="openai", base_url="http://127.0.0.1:1/v1", engine=EngineOptions(name="vllm"))
