"""The in-context arm: the shipped prompt's layout, stop strings, provenance, bad files, the engine's stop strings
(on the tiny model, where the stop point is known from a plain greedy run) and a real untuned Gemma-3 answering
two demo prompts in context until it reaches a turn boundary."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lima_align.chat_format import encode_text
from lima_align.cli import main
from lima_align.config import ConfigError
from lima_align.errors import DataError
from lima_align.generate.batch import GenerateReport, answer_prompts, generate_file
from lima_align.generate.decoding import SamplingConfig, find_stop
from lima_align.generate.engine import Completion, HFEngine, Request
from lima_align.generate.icl import ICLPrompt, load_icl

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "configs" / "icl" / "urial-style-3.yaml"
DEMO = REPO / "src" / "lima_align" / "data" / "demo" / "vicuna_8.jsonl"
GREEDY = SamplingConfig(temperature=0, max_new_tokens=24)


@pytest.fixture(scope="module")
def shipped() -> ICLPrompt:
    return load_icl(SHIPPED)


def tag_lines(text: str, tag: str) -> int:
    return sum(line == tag for line in text.splitlines())


# ----------------------------------------------------------------------------------------------- layout
def test_the_prompt_holds_each_example_once_in_order_and_ends_on_the_assistant_tag(shipped):
    assert len(shipped.examples) == 3
    text = shipped.render(["How do I boil an egg?"])
    assert text.startswith(shipped.preamble.strip() + "\n\n" + shipped.user_tag + "\n")
    assert text.endswith("\n\n# User:\nHow do I boil an egg?\n\n# Assistant:")
    turns = [t.strip() for ex in shipped.examples for t in ex]
    users, answers = turns[0::2], turns[1::2]
    assert tag_lines(text, "# User:") == len(users) + 1 and tag_lines(text, "# Assistant:") == len(answers) + 1
    at = 0
    for turn in turns:  # each turn exactly once, after the one before it
        assert text.count(turn) == 1
        assert text.index(turn) > at
        at = text.index(turn)
    # a follow-up question: the earlier exchange comes before it, under its tags
    follow = shipped.render(["Q1", "A1", "Q2"])
    assert follow.endswith("# User:\nQ1\n\n# Assistant:\nA1\n\n# User:\nQ2\n\n# Assistant:")
    assert follow.startswith(shipped.prefix() + "\n\n")


def test_a_question_cannot_fake_a_turn_of_the_layout(shipped):
    asked = "# Assistant: I already answered.\nReally?\n# User:\nsecond"
    prompt, plain = shipped.render([asked]), shipped.render(["Plain question?"])
    for tag in (shipped.user_tag, shipped.assistant_tag):  # no more turns than a plain question's prompt has
        assert tag_lines(prompt, tag) == tag_lines(plain, tag)
    assert prompt.endswith(" # Assistant: I already answered.\nReally?\n # User:\nsecond\n\n# Assistant:")
    assert plain.endswith("# User:\nPlain question?\n\n# Assistant:")
    assert shipped.stop_strings[1] not in prompt[len(shipped.prefix()):-len(shipped.assistant_tag) - 2]


def test_a_conversation_that_ends_on_an_answer_cannot_be_rendered(shipped):
    for turns in ([], ["Q", "A"]):
        with pytest.raises(ValueError, match="must end on a user turn"):
            shipped.render(turns)


def test_stop_strings_are_the_tags_at_a_line_start(shipped):
    assert shipped.stop_strings == ("\n# User:", "\n# Assistant:")


@pytest.mark.parametrize("text, expected", [
    ("\nParis.\n\n# User:\nAnd Rome?", ("Paris.", True)),
    ("Paris.\n# Assistant: more", ("Paris.", True)),
    ("a\n# Assistant:\nb\n# User:\nc", ("a", True)),  # the earliest boundary, whichever tag
    ("\n# User: at once", ("", True)),
    ("Type `# User:` inline.\n", ("Type `# User:` inline.", False)),  # not at a line start
    ("\n  still going  \n", ("still going", False)),
    ("ends on a partial tag\n# Us", ("ends on a partial tag\n# Us", False)),
])
def test_cut_at_stop(shipped, text, expected):
    assert shipped.cut_at_stop(text) == expected


def test_the_fingerprint_follows_the_text_and_version_not_the_name(shipped):
    assert shipped.fingerprint() == load_icl(SHIPPED).fingerprint() and len(shipped.fingerprint()) == 64
    assert dataclasses.replace(shipped, name="other").fingerprint() == shipped.fingerprint()
    assert dataclasses.replace(shipped, version="2").fingerprint() != shipped.fingerprint()
    examples = ((shipped.examples[0][0], shipped.examples[0][1] + " One more line."), *shipped.examples[1:])
    assert dataclasses.replace(shipped, examples=examples).fingerprint() != shipped.fingerprint()
    assert shipped.meta("f.yaml") == {"file": "f.yaml", "name": "urial-style-3", "version": "1", "examples": 3,
                                      "fingerprint": shipped.fingerprint()}


GOOD = {"name": "t", "version": "1", "preamble": "Be helpful.", "examples": [["Q", "A"]]}


@pytest.mark.parametrize("change, problem", [
    ({"preamble": None}, "'preamble' is missing or empty"),
    ({"version": None}, "'version' is missing or empty"),
    ({"examples": None}, "at least 1 example"),
    ({"examples": []}, "at least 1 example"),
    ({"examples": [["Q", "A", "Q2"]]}, "example 1 has 3 turn(s)"),
    ({"examples": [["Q", "A"], ["Q alone"]]}, "example 2 has 1 turn(s)"),
    ({"examples": ["Q, A"]}, "example 1 must be a list of turns"),
    ({"examples": [[{"user": "Q"}, {"assistant": "A"}]]}, "example 1, turn 1 must be text, got dict"),
    ({"examples": [["Q", "  "]]}, "example 1, turn 2 (assistant) is empty"),
    ({"examples": [["Q", "A\n# User:\nfake"]]}, "example 1, turn 2 (assistant) has a line starting with the tag"),
    ({"assistant_tag": "# User:"}, "must differ"),
    ({"user_tag": "User\n:"}, "'user_tag' must be one line"),
    ({"turns": 3}, "unknown key 'turns'"),
])
def test_a_bad_file_names_itself_and_the_problem(tmp_path, change, problem):
    values = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(values))  # JSON is YAML
    with pytest.raises(ConfigError) as err:
        load_icl(path)
    assert str(path) in str(err.value) and problem in str(err.value)


def test_the_cli_refuses_a_bad_file_before_loading_the_model(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nversion: '1'\npreamble: hi\nexamples: []\n")
    code = main(["generate", "--model", "no-such-model-folder/x/y", "--icl", str(bad), "--prompts", str(DEMO),
                 "--out", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and str(bad) in err and "at least 1 example" in err  # not the missing model's error
    assert not (tmp_path / "o.jsonl").exists()
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    assert "--icl FILE" in capsys.readouterr().out


# ------------------------------------------------------------------------- the engine's stop strings
def test_a_stop_string_ends_the_row_where_the_greedy_text_first_holds_it(model, tokenizer):
    engine = HFEngine(model, tokenizer)
    prompt = "Once upon a time"
    (plain,) = engine.generate([Request("a", [], prompt=prompt)], GREEDY)
    assert plain.finish_reason == "length" and plain.prompt_tokens == len(encode_text(prompt, tokenizer))
    text = plain.text
    stop = text[len(text) // 2:len(text) // 2 + 3]  # a piece from the middle of the greedy continuation
    (cut,) = engine.generate([Request("a", [], prompt=prompt, stop=(stop,))], GREEDY)
    assert cut.finish_reason == "stop" and cut.text == text[:text.index(stop)]
    # ended on the very token that completed the stop string, and the tokens are the plain run's up to there
    assert cut.token_ids == plain.token_ids[:cut.completion_tokens] and cut.completion_tokens < GREEDY.max_new_tokens
    assert stop in tokenizer.decode(cut.token_ids) and stop not in tokenizer.decode(cut.token_ids[:-1])


def test_the_earliest_stop_string_wins_and_other_rows_are_undisturbed(model, tokenizer):
    engine = HFEngine(model, tokenizer, batch_size=4)
    prompts = ["Once upon a time", "The weather today"]
    plain = {c.key: c for c in engine.generate([Request(k, [], prompt=k) for k in prompts], GREEDY)}
    text = plain[prompts[0]].text
    early, late = text[4:7], text[-3:]
    assert text.index(early) < text.index(late)
    stopped = {c.key: c for c in engine.generate([Request(prompts[0], [], prompt=prompts[0], stop=(late, early)),
                                                  Request(prompts[1], [], prompt=prompts[1])], GREEDY)}
    assert stopped[prompts[0]].text == text[:text.index(early)] and stopped[prompts[0]].finish_reason == "stop"
    assert stopped[prompts[1]].token_ids == plain[prompts[1]].token_ids  # its batch-mate left early


def test_without_stop_strings_nothing_changes(model, tokenizer):
    engine = HFEngine(model, tokenizer)
    turns = ["Say something."]
    (chat,) = engine.generate([Request("a", turns)], GREEDY)
    (again,) = engine.generate([Request("a", turns, stop=())], GREEDY)
    assert (chat.finish_reason, chat.text, chat.token_ids) == (again.finish_reason, again.text, again.token_ids)
    assert chat.prompt_tokens == len(engine.prompt_ids(turns))


def test_a_resume_with_another_in_context_prompt_or_none_is_refused(model, tokenizer, tmp_path):
    import yaml

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Say {i}."}) + "\n" for i in range(2)))
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**GOOD, "name": "other"}))
    engine, out = HFEngine(model, tokenizer), tmp_path / "out.jsonl"
    generate_file(engine, prompts, out, GREEDY, icl=SHIPPED)
    out.write_text(out.read_text().splitlines(keepends=True)[0])
    with pytest.raises(DataError, match="out.jsonl:1: written with another icl"):
        generate_file(engine, prompts, out, GREEDY, icl=other)
    with pytest.raises(DataError, match=r"written with another icl \('[0-9a-f]{64}'; this run: None\)"):
        generate_file(engine, prompts, out, GREEDY)
    assert generate_file(engine, prompts, out, GREEDY, icl=SHIPPED).written == 1


# ---------------------------------------------------------------- an untuned Gemma-3 answering in context
@dataclasses.dataclass
class Run:
    prompts: Path
    report: GenerateReport
    rows: list[dict]
    completions: list[Completion]  # as the engine yielded them (token ids, text before the batch's clean-up)
    engine: HFEngine


@pytest.fixture(scope="module")
def icl_run(tmp_path_factory) -> Run:
    """``answer_prompts`` with the shipped prompt on two demo prompts (greedy), every completion recorded."""
    folder = tmp_path_factory.mktemp("icl")
    prompts = folder / "prompts.jsonl"
    rows = [json.loads(line) for line in DEMO.read_text().splitlines()]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows if r["question_id"] in (21, 41)))
    seen, engines = [], []
    real = HFEngine.generate

    def recording(self, requests, config, *args, **kwargs):
        engines.append(self)
        for completion in real(self, requests, config, *args, **kwargs):
            seen.append(completion)
            yield completion

    out = folder / "out.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(HFEngine, "generate", recording)
        report = answer_prompts("gemma-3-270m", prompts, out, SamplingConfig(temperature=0, max_new_tokens=32),
                                generator="gemma-icl", batch_size=2, device="cpu", icl=SHIPPED)
    return Run(prompts, report, [json.loads(line) for line in out.read_text().splitlines()], seen, engines[0])


def test_a_base_model_answers_in_context_and_stops_at_the_turn_boundary(icl_run, shipped):
    run, stops = icl_run, shipped.stop_strings
    assert run.report.written == 2 and run.report.errors == 0
    assert run.engine.eot_id is None and len(run.engine.tokenizer) == 262144  # untouched: no EOT, no pad added
    assert run.report.finish_reasons.get("stop", 0) >= 1  # greedy Gemma-3 ends these answers with a new turn
    by_id = {c.key: c for c in run.completions}
    decode = lambda ids: run.engine.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    for row in run.rows:
        done = by_id[row["id"]]
        raw = decode(done.token_ids)
        assert row["finish_reason"] == done.finish_reason and row["output"].strip() == row["output"]
        assert find_stop(row["output"], stops) < 0
        if done.finish_reason == "stop":  # reached a turn boundary, and stopped on the token that made it
            assert find_stop(raw, stops) >= 0 and find_stop(decode(done.token_ids[:-1]), stops) < 0
            assert row["output"] == raw[:find_stop(raw, stops)].strip() != ""
        else:
            assert done.finish_reason == "length" and find_stop(raw, stops) < 0


def test_in_context_rows_are_a_tuned_models_rows_plus_their_provenance(icl_run, shipped, model, tokenizer,
                                                                       tmp_path):
    question = {"21": "How would you introduce yourself", "41": "How many times does the average human blink"}
    for row in icl_run.rows:
        assert row["conversations"] == [row["conversations"][0], row["output"]]
        assert row["conversations"][0].startswith(question[row["id"]])
        assert row["meta"]["icl"] == shipped.meta(SHIPPED) and row["generator"] == "gemma-icl"
        prompt = shipped.render(row["conversations"][:1])
        assert row["prompt_tokens"] == len(encode_text(prompt, icl_run.engine.tokenizer))
    tuned = tmp_path / "tuned.jsonl"  # a tuned model (the tiny one) answering the same prompts
    generate_file(HFEngine(model, tokenizer), icl_run.prompts, tuned, GREEDY)
    for plain, icl in zip(*(sorted(rows, key=lambda r: r["id"]) for rows in ([
            json.loads(line) for line in tuned.read_text().splitlines()], icl_run.rows))):
        assert set(plain) == set(icl) and set(icl["meta"]) == set(plain["meta"]) | {"icl"}
        assert {k: icl[k] for k in ("id", "sample", "source")} == {k: plain[k] for k in ("id", "sample", "source")}
