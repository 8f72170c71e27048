"""The OpenAI-compatible judge client for real (openai + httpx) against a scripted server on 127.0.0.1 that
injects 429 / 500 / timeouts / garbage, and the persistent cache."""

import asyncio

from lima_align.evaluate.cache import JudgeCache, NoCache, cache_key
from lima_align.evaluate.clients import CachedJudge, CallParams, OpenAIJudge, Pricing, RetryPolicy
from lima_align.evaluate.stub_server import Action, stub_server

MSG = [{"role": "user", "content": "hi"}]
FAST = RetryPolicy(max_retries=6, backoff_s=0.01, timeout_s=0.5)


def run(coro):
    return asyncio.run(coro)


def test_retries_every_transient_failure_then_succeeds(tmp_path):
    script = [Action(status=429, headers={"retry-after": "0"}), Action(status=500), Action(status=503),
              Action(raw=b"<html>bad gateway</html>"), Action(delay_s=1.5), Action(raw=b'{"choices": []}'),
              Action(text="Verdict: A")]
    with stub_server(lambda body, n: script[n - 1]) as server:
        client = OpenAIJudge("judge", base_url=server.base_url, api_key="k", retry=FAST)
        reply = run(client.complete(MSG, CallParams()))
    assert reply.text == "Verdict: A" and reply.error is None
    assert reply.attempts == 7 and server.calls == 7
    assert (reply.prompt_tokens, reply.completion_tokens) == (10, 5)


def test_gives_up_with_an_error_not_an_exception():
    with stub_server(lambda body, n: Action(status=500)) as server:
        client = OpenAIJudge("judge", base_url=server.base_url, api_key="k",
                             retry=RetryPolicy(max_retries=2, backoff_s=0.01, timeout_s=1))
        reply = run(client.complete(MSG, CallParams()))
    assert reply.text is None and "HTTP 500" in reply.error and server.calls == 3


def test_client_errors_are_not_retried():
    with stub_server(lambda body, n: Action(status=400)) as server:
        client = OpenAIJudge("judge", base_url=server.base_url, api_key="k", retry=FAST)
        reply = run(client.complete(MSG, CallParams()))
    assert "HTTP 400" in reply.error and server.calls == 1


def test_concurrency_limit_is_respected():
    active, peak = [0], [0]
    import threading
    lock = threading.Lock()

    def respond(body, n):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        import time
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return Action(text="ok")

    async def many(client):
        return await asyncio.gather(*(client.complete([{"role": "user", "content": str(i)}], CallParams())
                                      for i in range(12)))

    with stub_server(respond) as server:
        client = OpenAIJudge("judge", base_url=server.base_url, api_key="k", concurrency=3, retry=FAST)
        replies = run(many(client))
    assert all(r.text == "ok" for r in replies) and peak[0] <= 3


def test_cache_hit_makes_no_call_and_survives_reopening(tmp_path):
    with stub_server(lambda body, n: Action(text="Rating: Pass")) as server:
        for round_ in range(2):
            cache = JudgeCache(tmp_path / "cache.sqlite")  # reopened: persistent
            judge = CachedJudge(OpenAIJudge("judge", base_url=server.base_url, api_key="k", retry=FAST), cache,
                                Pricing(input_per_mtok=1e6, output_per_mtok=2e6))
            reply = run(judge.complete(MSG, CallParams(), "v1"))
            assert reply.text == "Rating: Pass" and reply.cached == (round_ == 1)
            assert reply.cost_usd == 10 * 1 + 5 * 2  # dollars: 10 prompt, 5 completion tokens
            cache.close()
        assert server.calls == 1
        assert judge.usage.cache_hits == 1 and judge.usage.cost_usd == 0  # this run paid nothing


def test_failed_calls_are_not_cached(tmp_path):
    with stub_server(lambda body, n: Action(status=500) if n <= 2 else Action(text="ok")) as server:
        judge = CachedJudge(OpenAIJudge("judge", base_url=server.base_url, api_key="k",
                                        retry=RetryPolicy(max_retries=1, backoff_s=0.01, timeout_s=1)),
                            JudgeCache(tmp_path / "c.sqlite"))

        async def twice():
            return [await judge.complete(MSG, CallParams(), "v1") for _ in range(2)]

        first, second = run(twice())  # one event loop: the client's connection pool belongs to it
        assert first.error and second.text == "ok"
        assert judge.usage.failures == 1


def test_cache_key_is_stable_and_covers_every_input():
    base = cache_key("m", "v1", MSG, CallParams().to_dict())
    assert base == cache_key("m", "v1", [{"content": "hi", "role": "user"}], CallParams().to_dict())
    assert len({base, cache_key("m2", "v1", MSG, CallParams().to_dict()),
                cache_key("m", "v2", MSG, CallParams().to_dict()),
                cache_key("m", "v1", [{"role": "user", "content": "hi!"}], CallParams().to_dict()),
                cache_key("m", "v1", MSG, CallParams(temperature=0.7).to_dict()),
                cache_key("m", "v1", MSG, CallParams(sample=1).to_dict())}) == 6
    assert NoCache().get(base) is None
