"""The OpenAI-compatible server, run for real on 127.0.0.1 and called with the official ``openai`` client."""

import json
import math
import socket
import threading
import time

import httpx
import openai
import pytest
import torch

from lima_align.chat_format import render
from lima_align.generate.engine import HFEngine, Request
from lima_align.generate.loading import load_for_generation
from lima_align.generate.decoding import SamplingConfig
from lima_align.generate.openai_api import ServerLimits
from lima_align.generate.server import serve_in_thread

NAME = "smollm2-test"
HELLO = [{"role": "user", "content": "Say hello."}]  # smollm2 answers in ~3 tokens and stops (EOS)
# Outside its own chat template smollm2 rambles on this one (greedy: never stops within 64 tokens)
LONG = [{"role": "user", "content": "List twenty animals, one per line:"}]


@pytest.fixture(scope="module")
def engine():
    model, tokenizer, fmt = load_for_generation("smollm2-135m-instruct", add_eot=True, device="cpu")
    return HFEngine(model, tokenizer, fmt, batch_size=8)


@pytest.fixture(scope="module")
def server(engine):
    limits = ServerLimits(max_tokens=64, max_context=256)
    with serve_in_thread(engine, served_name=NAME, limits=limits, window_s=0.05) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)


def test_health_and_models(server, client):
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
    assert [m.id for m in client.models.list()] == [NAME]


def test_completion_is_the_engine_output_with_usage_and_stop(engine, client):
    reply = client.chat.completions.create(model=NAME, messages=HELLO, temperature=0, max_tokens=16)
    (choice,) = reply.choices
    greedy = SamplingConfig(temperature=0, max_new_tokens=16)
    (direct,) = engine.generate([Request("x", ["Say hello."])], greedy)
    assert choice.message.role == "assistant" and choice.message.content == direct.text
    assert choice.finish_reason == "stop"
    prompt = render(["Say hello."], engine.tokenizer, engine.fmt, add_generation_prompt=True)
    prompt_tokens = len(prompt.input_ids)
    assert reply.usage.prompt_tokens == prompt_tokens
    assert reply.usage.completion_tokens == direct.completion_tokens
    assert reply.usage.total_tokens == prompt_tokens + direct.completion_tokens


def test_length_finish_and_multi_turn(client):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
                *LONG]
    reply = client.chat.completions.create(model=NAME, messages=messages, temperature=0, max_tokens=3)
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 3


def test_streaming_equals_non_streaming(client):
    settings = dict(model=NAME, messages=LONG, temperature=0, max_tokens=12)
    whole = client.chat.completions.create(**settings).choices[0]
    stream = client.chat.completions.create(**settings, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.message.content
    assert sum(bool(c.choices and c.choices[0].delta.content) for c in chunks) > 3  # really streamed
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12


def test_stop_strings_end_the_reply_before_them_streamed_or_not(client):
    settings = dict(model=NAME, messages=LONG, temperature=0, max_tokens=40)
    free = client.chat.completions.create(**settings).choices[0].message.content
    # a stop string from the middle of the greedy reply, first found there
    at = next(k for k in range(len(free) // 2, len(free) - 4) if free.find(free[k:k + 4]) == k)
    stop, cut = free[at:at + 4], free[:at]
    whole = client.chat.completions.create(**settings, stop=[stop, "never in it"])
    (choice,) = whole.choices
    assert (choice.message.content, choice.finish_reason) == (cut, "stop")
    assert whole.usage.completion_tokens < client.chat.completions.create(**settings).usage.completion_tokens
    chunks = list(client.chat.completions.create(**settings, stop=stop, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == cut
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_concurrent_requests_are_batched_and_seeded_text_does_not_depend_on_the_batch(server, client):
    settings = dict(model=NAME, messages=LONG, temperature=1.0, max_tokens=6)
    solo = {seed: client.chat.completions.create(**settings, seed=seed).choices[0].message.content
            for seed in (1, 2)}
    before = server.worker.stats.max_rows
    results: dict[int, str] = {}

    def call(i: int) -> None:
        results[i] = client.chat.completions.create(**settings, seed=1 + i % 2).choices[0].message.content

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(server.worker.stats.max_rows, before) > 1
    assert all(results[i] == solo[1 + i % 2] for i in range(6))


def test_n_choices_are_different_samples(client):
    reply = client.chat.completions.create(model=NAME, messages=LONG, n=3, seed=5, temperature=1.0,
                                           max_tokens=8)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert len({c.message.content for c in reply.choices}) > 1
    assert 3 <= reply.usage.completion_tokens <= 24


def _direct_logprobs(engine, turns, generated):
    """log-softmax of the model's logits after the prompt and each generated prefix: one forward pass each."""
    ids = render(turns, engine.tokenizer, engine.fmt, add_generation_prompt=True).input_ids
    with torch.inference_mode():
        return [engine.model(torch.tensor([ids + generated[:i]])).logits[0, -1].float().log_softmax(-1)
                for i in range(len(generated))]


@pytest.mark.parametrize("temperature", [0.0, 0.5])
def test_logprobs_are_the_models_own_softmax(engine, client, temperature):
    """Whatever the sampler does (penalty 1.2, temperature), the logprobs are the model's raw distribution."""
    reply = client.chat.completions.create(model=NAME, messages=LONG, temperature=temperature, seed=3,
                                           max_tokens=4, logprobs=True, top_logprobs=5)
    content = reply.choices[0].logprobs.content
    turns = [LONG[0]["content"]]
    # the server's seed is the engine's request key: the same request, direct, gives the same tokens
    (same,) = engine.generate([Request("3", turns)], SamplingConfig(temperature=temperature, max_new_tokens=4))
    assert same.text == reply.choices[0].message.content and len(content) == len(same.token_ids) == 4
    text = engine.token_text
    for entry, direct, token in zip(content, _direct_logprobs(engine, turns, same.token_ids), same.token_ids):
        top = direct.topk(5)
        assert [t.token for t in entry.top_logprobs] == [text(i) for i in top.indices.tolist()]
        assert [t.logprob for t in entry.top_logprobs] == pytest.approx(top.values.tolist(), abs=2e-4)
        assert entry.token == text(token) and entry.logprob == pytest.approx(float(direct[token]), abs=2e-4)
        assert entry.bytes == list(entry.token.encode()) and sum(math.exp(t.logprob) for t in entry.top_logprobs) < 1


def test_no_logprobs_unless_asked_and_top_zero_gives_the_sampled_token_only(client):
    plain = client.chat.completions.create(model=NAME, messages=HELLO, temperature=0, max_tokens=2)
    assert plain.choices[0].logprobs is None
    bare = client.chat.completions.create(model=NAME, messages=HELLO, temperature=0, max_tokens=2, logprobs=True)
    assert [e.top_logprobs for e in bare.choices[0].logprobs.content] == [[], []]
    assert all(e.logprob <= 0 for e in bare.choices[0].logprobs.content)


def _post(server, body, **kwargs):
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(f"{server.base_url}/chat/completions", content=content,
                      headers={"Content-Type": "application/json"}, timeout=60, **kwargs)


BAD = {
    "not json": (b"{'model': ", 400),
    "not an object": ([1, 2], 400),
    "no messages": ({"model": NAME}, 400),
    "no model": ({"messages": HELLO}, 400),
    "unknown model": ({"model": "gpt-9", "messages": HELLO}, 404),
    "assistant first": ({"model": NAME, "messages": [{"role": "assistant", "content": "x"}]}, 400),
    "two users": ({"model": NAME, "messages": HELLO + HELLO}, 400),
    "ends on assistant": ({"model": NAME, "messages": HELLO + [{"role": "assistant", "content": "hi"}]}, 400),
    "system": ({"model": NAME, "messages": [{"role": "system", "content": "Be brief."}] + HELLO}, 400),
    "content not text": ({"model": NAME, "messages": [{"role": "user", "content": 3}]}, 400),
    "temperature": ({"model": NAME, "messages": HELLO, "temperature": 5}, 400),
    "top_p": ({"model": NAME, "messages": HELLO, "top_p": 0}, 400),
    "repetition_penalty": ({"model": NAME, "messages": HELLO, "repetition_penalty": 9}, 400),
    "n": ({"model": NAME, "messages": HELLO, "n": 100}, 400),
    "seed type": ({"model": NAME, "messages": HELLO, "seed": "x"}, 400),
    "max_tokens over cap": ({"model": NAME, "messages": HELLO, "max_tokens": 65}, 400),
    "max_tokens bad beside a good max_completion_tokens": ({"model": NAME, "messages": HELLO, "max_tokens": 0,
                                                           "max_completion_tokens": 2}, 400),
    "max_tokens zero": ({"model": NAME, "messages": HELLO, "max_tokens": 0}, 400),
    "over the context": ({"model": NAME, "messages": [{"role": "user", "content": "word " * 230}],
                          "max_tokens": 64}, 400),
    "stop not text": ({"model": NAME, "messages": HELLO, "stop": 3}, 400),
    "stop list of numbers": ({"model": NAME, "messages": HELLO, "stop": [1]}, 400),
    "five stop strings": ({"model": NAME, "messages": HELLO, "stop": list("abcde")}, 400),
    "empty stop string": ({"model": NAME, "messages": HELLO, "stop": ""}, 400),
    "stop string too long": ({"model": NAME, "messages": HELLO, "stop": "x" * 257}, 400),
    "top_logprobs without logprobs": ({"model": NAME, "messages": HELLO, "top_logprobs": 3}, 400),
    "top_logprobs over 20": ({"model": NAME, "messages": HELLO, "logprobs": True, "top_logprobs": 21}, 400),
    "logprobs not a boolean": ({"model": NAME, "messages": HELLO, "logprobs": "yes"}, 400),
    "stream 0": ({"model": NAME, "messages": HELLO, "stream": 0}, 400),
    "stream_options empty list": ({"model": NAME, "messages": HELLO, "stream_options": []}, 400),
    "include_usage not a boolean": ({"model": NAME, "messages": HELLO, "stream": True,
                                     "stream_options": {"include_usage": "yes"}}, 400),
    "logprobs streamed": ({"model": NAME, "messages": HELLO, "logprobs": True, "stream": True}, 400),
    # hostile input found by an attack run: each of these was a 500 (some as plain text)
    "temperature NaN": (b'{"model": "smollm2-test", "messages": [{"role": "user", "content": "x"}], '
                        b'"temperature": NaN}', 400),
    "top_p NaN": (b'{"model": "smollm2-test", "messages": [{"role": "user", "content": "x"}], "top_p": NaN}', 400),
    "penalty Infinity": (b'{"model": "smollm2-test", "messages": [{"role": "user", "content": "x"}], '
                         b'"repetition_penalty": Infinity}', 400),
    "nested 100,000 deep": (b"[" * 100_000, 400),
    "invalid UTF-8": (b'{"model": "\xff\xfe"}', 400),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_get_openai_errors(server, case):
    body, status = BAD[case]
    response = _post(server, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]


def test_an_empty_stop_list_is_accepted(server):
    """lm-eval sends ``stop: []`` (IFEval's ``until``) in every request: it means no stop strings."""
    response = _post(server, {"model": NAME, "messages": HELLO, "max_tokens": 2, "stop": []})
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"]


def test_nan_that_gets_past_the_json_reader_is_still_refused():
    from lima_align.generate.openai_api import ApiError, parse_sampling

    for name in ("temperature", "top_p", "repetition_penalty"):
        with pytest.raises(ApiError, match="finite") as err:
            parse_sampling({name: math.nan}, SamplingConfig(), ServerLimits(), room=100)
        assert err.value.status == 400 and err.value.param == name


def test_an_oversized_body_is_refused_before_it_is_read(engine):
    limits = ServerLimits(max_body_bytes=1000)
    with serve_in_thread(engine, served_name=NAME, limits=limits) as running:
        url = f"{running.base_url}/chat/completions"
        declared = httpx.post(url, content=b"x" * 2000, headers={"Content-Type": "application/json"})
        assert declared.status_code == 413 and declared.json()["error"]["code"] == "body_too_large"
        # a 2 GB Content-Length and no body at all: answered at once, from the header (reading it would hang)
        host, port = running.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 2000000000\r\n\r\n")
            assert raw.recv(200).startswith(b"HTTP/1.1 413")

        def chunked():  # no Content-Length: cut off when the stream passes the limit, whatever its total
            for _ in range(10_000):
                yield b" " * 1000

        streamed = httpx.post(url, content=chunked(), headers={"Content-Type": "application/json"}, timeout=60)
        assert streamed.status_code == 413
        assert _post(running, {"model": NAME, "messages": HELLO, "max_tokens": 2}).status_code == 200


def test_no_docs_routes_leak_past_the_api_key(engine):
    with serve_in_thread(engine, served_name=NAME, api_key="sekrit") as running:
        for path in ("/docs", "/redoc", "/openapi.json"):
            response = httpx.get(f"{running.url}{path}")
            assert response.status_code == 404 and response.json()["error"]["message"], path


def test_the_openai_client_sees_the_errors(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=HELLO)
    with pytest.raises(openai.BadRequestError, match="context"):
        client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "word " * 230}],
                                       max_tokens=64)
    assert httpx.get(f"{client.base_url}models".replace("/v1/models", "/nope")).status_code == 404


def test_client_disconnect_mid_stream_leaves_the_server_working(engine):
    # a budget far longer than the test waits: only the cancellation can end this batch in time, even on a
    # loaded machine where noticing the disconnect takes a while
    limits = ServerLimits(max_tokens=1024, max_context=2048)
    endless = HFEngine(engine.model, engine.tokenizer, engine.fmt, batch_size=8)
    endless.stop_ids = set()  # the model may say EOS early; here only the budget or the cancellation end a row
    with serve_in_thread(endless, served_name=NAME, limits=limits, window_s=0.05) as server:
        _disconnect_and_recover(server)


def test_a_cancellation_between_two_checks_of_one_step_still_abandons_the_batch(engine):
    # the event loop thread can cancel a job while the worker is inside on_token (sending a delta releases the
    # GIL): the row then ends through should_stop ("cancelled") instead of _Abandoned; the batch still counts
    from lima_align.generate.openai_api import ChatParams
    from lima_align.generate.server import BatchWorker, Job

    endless = HFEngine(engine.model, engine.tokenizer, engine.fmt, batch_size=8)
    endless.stop_ids = set()
    worker = BatchWorker(endless)
    finished = []

    def sink(event):  # the first delta: the client goes away right now, mid-step
        job.cancelled = True
        finished.append(event)

    params = ChatParams(turns=["List twenty animals, one per line:"], config=SamplingConfig(max_new_tokens=500),
                        seed=1, n=1, stream=True, include_usage=False, prompt_tokens=0)
    job = Job(params, sink)
    worker._run([job], params.config)
    assert worker.stats.abandoned == 1 and len(finished) == 1


def _disconnect_and_recover(server):
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    body = {"model": NAME, "messages": LONG, "max_tokens": 1000, "stream": True, "temperature": 0}
    with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        events = (line for line in response.iter_lines() if line)
        assert next(events).startswith("data: ")  # the role chunk
        assert '"content": ' in next(events)  # the first token: generation is under way
    # the only request of its batch went away: the batch is abandoned, the next request is served at once
    deadline = time.monotonic() + 90  # noticing the disconnect can be slow on a loaded machine
    while server.worker.stats.abandoned == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.worker.stats.abandoned == 1
    assert httpx.get(f"{server.url}/health").status_code == 200
    reply = client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=4)
    assert reply.choices[0].message.content is not None


def test_api_key_and_system_policy(engine):
    limits = ServerLimits(max_tokens=8, system="ignore")
    with serve_in_thread(engine, served_name=NAME, api_key="sekret", limits=limits) as running:
        for key in ("wrong", None):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            response = httpx.get(f"{running.base_url}/models", headers=headers)
            assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=running.base_url, api_key="wrong", max_retries=0).models.list()
        good = openai.OpenAI(base_url=running.base_url, api_key="sekret", max_retries=0)
        messages = [{"role": "system", "content": "Be brief."}] + HELLO
        with_system = good.chat.completions.create(model=NAME, messages=messages, temperature=0, max_tokens=4)
        without = good.chat.completions.create(model=NAME, messages=HELLO, temperature=0, max_tokens=4)
        assert with_system.choices[0].message.content == without.choices[0].message.content
        assert with_system.usage.prompt_tokens == without.usage.prompt_tokens  # the system text went nowhere


def test_serve_and_chat_commands_are_registered():
    from lima_align.cli import build_parser

    args = build_parser().parse_args(["serve", "--model", "m", "--port", "9001", "--api-key", "k",
                                      "--served-name", "judge", "--temperature", "0.2", "--system", "ignore"])
    assert (args.port, args.api_key, args.served_name, args.temperature, args.system) == (9001, "k", "judge",
                                                                                           0.2, "ignore")
    assert build_parser().parse_args(["chat", "--model", "m"]).func.__name__ == "cmd_chat"


def test_fuzzing_the_server_finds_no_server_error(engine):
    """schemathesis with our OpenAPI description of the server (its limits as bounds), schema-valid and
    schema-violating requests, with the key, a wrong key and none."""
    import schemathesis

    from tests.schema_fuzz import by_status, fuzz

    limits = ServerLimits(max_tokens=3, max_context=96, max_n=2)
    with serve_in_thread(engine, served_name=NAME, api_key="sekrit", limits=limits, window_s=0.0) as running:
        schema = schemathesis.openapi.from_dict(running.app.openapi())
        who = [{"Authorization": "Bearer sekrit"}] * 3 + [{"Authorization": "Bearer wrong"}, {}]
        seen = fuzz(schema, running.url, who, examples=300)
        assert running.worker.stats.batches > 0  # some requests were valid all the way to the model
    statuses = by_status(seen)
    print("serve fuzz:", dict(sorted(statuses.items())), "completions:", seen[("POST /v1/chat/completions", 200)])
    assert not [s for s in statuses if s >= 500]
    assert {op for op, _ in seen} == {"GET /health", "GET /v1/models", "POST /v1/chat/completions"}
    assert statuses[200] > 20 and statuses[400] > 20 and statuses[401] > 20
    assert seen[("POST /v1/chat/completions", 200)] >= 5, seen
