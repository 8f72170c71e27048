"""lm-evaluation-harness (0.4.13) run for real against ``lima-align serve`` on 127.0.0.1 (smollm2-135m-instruct on
CPU): a tiny local generation task is scored for every doc from our server's answers; a loglikelihood task is
refused by lm-eval itself; a task's stop sequences reach our server, which ends each reply before them.

What lm-eval's ``local-chat-completions`` sends (``LocalChatCompletion._create_payload``): ``messages`` (one user
turn with ``apply_chat_template`` and no system instruction or task description), ``model``, ``max_tokens`` (the
task's ``max_gen_toks``, else 256: the server's ``ServerLimits.max_tokens`` must allow it), ``temperature`` (0
unless the task says otherwise), ``seed`` (1234) and ALWAYS ``stop`` (the task's ``until``, at most 4; ``[]``
for none). A system instruction or task ``description`` becomes a
``system`` message: a 400 unless the server runs with ``system="ignore"`` (which drops it).
"""

from __future__ import annotations

import json
import re
import textwrap

import httpx
import pytest

import lm_eval

from lm_eval.tasks import TaskManager  # noqa: E402

from lima_align.generate.decoding import find_stop  # noqa: E402
from lima_align.generate.engine import HFEngine  # noqa: E402
from lima_align.generate.loading import load_for_generation  # noqa: E402
from lima_align.generate.openai_api import ServerLimits  # noqa: E402
from lima_align.generate.server import serve_in_thread  # noqa: E402
from tests.evaluate.conftest import forbid_network

NAME = "lima"
# smollm2 is untrained on the LIMA template and mostly answers junk; under greedy decoding "Repeat after me: 42"
# gets ".\nThe answer is: 42", so one doc of four is a hit and the metric is not constant
DOCS = [("Repeat after me: 42", "42"), ("How many days are in a week?", "7"), ("What is 2 + 3?", "5"),
        ("Count from 1 to 5.", "5")]
MAX_GEN_TOKS = 12


class RecordingEngine:
    """The real engine, keeping each row the server's worker asked it for and what it answered."""

    def __init__(self, engine):
        self._engine = engine
        self.rows = []  # (Request, SamplingConfig, Completion)

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def generate(self, requests, config, **hooks):
        requests = list(requests)
        for completion in self._engine.generate(requests, config, **hooks):
            self.rows.append((requests[completion.index], config, completion))
            yield completion


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No hub access: offline flags for datasets / huggingface_hub, and any non-loopback connection fails."""
    import datasets
    import huggingface_hub

    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    forbid_network(monkeypatch)


@pytest.fixture(scope="module")
def engine():
    model, tokenizer, fmt = load_for_generation("smollm2-135m-instruct", add_eot=True, device="cpu")
    return RecordingEngine(HFEngine(model, tokenizer, fmt, batch_size=4))


@pytest.fixture(scope="module")
def server(engine):
    with serve_in_thread(engine, served_name=NAME, limits=ServerLimits(max_tokens=16, max_context=512),
                         window_s=0.01) as running:
        yield running


@pytest.fixture()
def tasks(tmp_path):
    """Three local tasks over JSONL files (no hub): generation, multiple choice, generation with a stop string."""
    qa, mc = tmp_path / "qa.jsonl", tmp_path / "mc.jsonl"
    qa.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in DOCS))
    mc.write_text(json.dumps({"question": "What is 2 + 3?", "choices": ["4", "5"], "label": 1}) + "\n")
    common = 'dataset_path: json\ntest_split: test\ndoc_to_text: "{{question}}"\n'

    def data(path):
        return f"dataset_kwargs:\n  data_files:\n    test: {path}\n  cache_dir: {tmp_path / 'hf-datasets'}\n"
    (tmp_path / "qa.yaml").write_text("task: lima_qa\n" + common + data(qa) + textwrap.dedent(f"""\
        output_type: generate_until
        doc_to_target: "{{{{answer}}}}"
        generation_kwargs: {{until: [], do_sample: false, temperature: 0.0, max_gen_toks: {MAX_GEN_TOKS}}}
        filter_list:
          - name: first_number
            filter:
              - {{function: regex, regex_pattern: "(\\\\d+)"}}
              - {{function: take_first}}
        metric_list:
          - {{metric: exact_match, aggregation: mean, higher_is_better: true}}
        """))
    (tmp_path / "mc.yaml").write_text("task: lima_mc\n" + common + data(mc) + textwrap.dedent("""\
        output_type: multiple_choice
        doc_to_choice: "{{choices}}"
        doc_to_target: "{{label}}"
        metric_list:
          - {metric: acc, aggregation: mean, higher_is_better: true}
        """))
    (tmp_path / "stop.yaml").write_text("task: lima_stop\n" + common + data(qa) + textwrap.dedent(f"""\
        output_type: generate_until
        doc_to_target: "{{{{answer}}}}"
        generation_kwargs: {{until: ["\\n\\n"], do_sample: false, max_gen_toks: {MAX_GEN_TOKS}}}
        metric_list:
          - {{metric: exact_match, aggregation: mean, higher_is_better: true}}
        """))
    return TaskManager(include_path=str(tmp_path), include_defaults=False)


def evaluate(server, tasks, name, **options):
    args = (f"model={NAME},base_url={server.base_url}/chat/completions,num_concurrent=1,max_retries=1,"
            "tokenized_requests=False")
    return lm_eval.simple_evaluate(model="local-chat-completions", model_args=args, tasks=[name],
                                   task_manager=tasks, apply_chat_template=True, limit=len(DOCS), **options)


def rows_served(server):
    return httpx.get(f"{server.url}/health").json()["worker"]["rows"]


def test_a_generation_task_is_scored_from_our_servers_answers(server, engine, tasks):
    before, engine.rows[:] = rows_served(server), []
    result = evaluate(server, tasks, "lima_qa")
    samples = result["samples"]["lima_qa"]
    assert rows_served(server) - before == len(DOCS) == len(samples) == len(engine.rows)
    served = {req.turns[0]: (req, config, done) for req, config, done in engine.rows}
    assert sorted(served) == sorted(q for q, _ in DOCS)  # one user turn each: the doc's text, no system turn
    for req, config, done in served.values():  # what lm-eval asked for reached the engine
        assert (len(req.turns), req.key, config.temperature, req.max_new_tokens) == (1, "1234", 0.0, MAX_GEN_TOKS)
        assert done.completion_tokens <= MAX_GEN_TOKS
    for sample in samples:
        question, target = sample["doc"]["question"], sample["target"]
        reply = served[question][2].text
        assert sample["resps"] == [[reply]]  # lm-eval scored exactly what our server answered
        number = next(iter(re.findall(r"(\d+)", reply)), "[invalid]")
        assert sample["filtered_resps"] == [number]
        assert sample["exact_match"] == float(number == target)
    scores = {s["doc"]["question"]: s["exact_match"] for s in samples}
    assert scores["Repeat after me: 42"] == 1.0 and scores["What is 2 + 3?"] == 0.0
    metrics = result["results"]["lima_qa"]
    assert metrics["sample_len"] == len(DOCS)
    assert metrics["exact_match,first_number"] == pytest.approx(sum(scores.values()) / len(DOCS))


def test_a_loglikelihood_task_is_refused_by_lm_eval_before_any_request(server, tasks):
    before = rows_served(server)
    with pytest.raises(NotImplementedError, match="Loglikelihood is not supported for chat completions"):
        evaluate(server, tasks, "lima_mc")
    assert rows_served(server) == before


def test_stop_sequences_reach_the_server_and_end_its_replies(server, engine, tasks):
    whole = evaluate(server, tasks, "lima_stop", gen_kwargs={"until": []})["samples"]["lima_stop"]
    free = {s["doc"]["question"]: s["resps"][0][0] for s in whole}
    stops = (" ", "\n")
    assert sum(find_stop(reply, stops) >= 0 for reply in free.values()) >= 2, free
    before = len(engine.rows)
    result = evaluate(server, tasks, "lima_stop", gen_kwargs={"until": list(stops)})
    rows = engine.rows[before:]
    assert len(rows) == len(DOCS)
    for req, _, done in rows:  # the server cut the reply (not only lm-eval afterwards)
        assert req.stop == stops
        reply, at = free[req.turns[0]], find_stop(free[req.turns[0]], stops)
        assert done.text == (reply[:at] if at >= 0 else reply)
        assert done.finish_reason == "stop" if at >= 0 else done.finish_reason in ("eot", "eos", "length")
    served = {req.turns[0]: done.text for req, _, done in rows}
    for sample in result["samples"]["lima_stop"]:
        assert sample["resps"] == [[served[sample["doc"]["question"]]]]
