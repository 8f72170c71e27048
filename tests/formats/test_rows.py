import json

import pytest

from lima_align.conversation import Example, OddTurns, ReadReport
from lima_align.errors import DataError, LimaError
from lima_align.formats.rows import FORMAT_NAMES, convert, detect_row_format, read_examples, write_examples
from lima_align.conversation import Where

WRITABLE = [f for f in FORMAT_NAMES if f != "prompts"]


@pytest.fixture(scope="module")
def lima_examples(lima_train):
    return read_examples(lima_train)


def test_lima_training_file_loads_all_rows(lima_examples):
    assert len(lima_examples) == 1022
    assert all(len(ex.conversations) == 2 for ex in lima_examples)
    assert len({ex.id for ex in lima_examples}) == 1022


@pytest.mark.parametrize("fmt", WRITABLE)
def test_round_trip_reproduces_conversations(lima_examples, tmp_path, fmt):
    out = tmp_path / ("out.parquet" if fmt == "hf-dataset" else "out")
    assert write_examples(out, lima_examples, fmt) == 1022
    back = read_examples(out)  # format guessed from content
    assert [ex.conversations for ex in back] == [ex.conversations for ex in lima_examples]


def test_hf_dataset_folder_keeps_ids_sources_and_meta(tmp_path):
    examples = [Example("a1", ["q", "a"], "wikihow", {"license": "CC BY-NC-SA 3.0", "curation": {"k": 1}}),
                Example("a2", ["q2"], "authored", {})]
    write_examples(tmp_path / "ds", examples, "hf-dataset")
    back = read_examples(tmp_path / "ds")
    assert [(e.id, e.source, e.conversations) for e in back] == [(e.id, e.source, e.conversations)
                                                                 for e in examples]
    assert back[0].meta["curation"] == {"k": 1}


MULTI = Example("m1", ["q1", "a1", "q2", "a2"], "dialogue", {"system": "Be brief."})


@pytest.mark.parametrize("fmt", ["gair-lima", "sharegpt", "messages", "alpaca"])
def test_multi_turn_and_system_survive(tmp_path, fmt):
    write_examples(tmp_path / "m", [MULTI], fmt)
    (back,) = read_examples(tmp_path / "m", fmt)
    assert back.conversations == MULTI.conversations
    assert back.meta["system"] == "Be brief."


@pytest.mark.parametrize("fmt", ["instruction-response", "alpaca-eval"])
def test_single_turn_formats_refuse_multi_turn(tmp_path, fmt):
    with pytest.raises(LimaError, match="has 4 turns"):
        write_examples(tmp_path / "m", [MULTI], fmt)
    assert not (tmp_path / "m").exists()  # atomic: nothing half-written


def test_prompts_format_is_read_only(tmp_path):
    with pytest.raises(LimaError, match="read-only"):
        write_examples(tmp_path / "p", [MULTI], "prompts")


@pytest.mark.parametrize("rel, fmt, count, prompt_only", [
    ("eval/alpaca_eval/text_davinci_003_model_outputs.json", "alpaca-eval", 805, None),
    ("eval/mt_bench/question.jsonl", "prompts", 80, 80),
    ("eval/vicuna_bench/question.jsonl", "prompts", 80, 80),
    ("eval/koala/koala_test_set.jsonl", "prompts", 180, 180),
    ("eval/wizardlm/wizardlm_test_set.jsonl", "prompts", 218, 218),
    ("eval/self_instruct/user_oriented_instructions.jsonl", "prompts", 252, 252),
    ("instruction_data/torchtune_alpaca_tiny.json", "alpaca", 100, 0),
    ("instruction_data/litgpt_dolly_fixture.json", "instruction-response", 12, 0),
])
def test_real_files_are_detected_and_read(shared_data, rel, fmt, count, prompt_only):
    from lima_align.fileio import iter_json_records

    _, first = next(iter(iter_json_records(shared_data / rel)))
    assert detect_row_format(first, Where(rel)) == fmt
    examples = read_examples(shared_data / rel)
    assert len(examples) == count
    if prompt_only is not None:
        assert sum(ex.is_prompt_only for ex in examples) == prompt_only


def test_alpaca_eval_keeps_generator_and_marks_empty_outputs(shared_data):
    examples = read_examples(shared_data / "eval/alpaca_eval/text_davinci_003_model_outputs.json")
    assert {ex.meta["generator"] for ex in examples} == {"text_davinci_003"}
    empty = [ex for ex in examples if ex.meta.get("empty_output")]
    assert empty and all(ex.is_prompt_only for ex in empty)


def test_mt_bench_keeps_follow_up_turns(shared_data):
    first = read_examples(shared_data / "eval/mt_bench/question.jsonl")[0]
    assert first.id == "81" and first.source == "writing"
    assert len(first.meta["followup_turns"]) == 1


def test_dolly_context_is_appended_to_the_prompt(shared_data):
    ex = read_examples(shared_data / "instruction_data/litgpt_dolly_fixture.json")[0]
    assert ex.prompt.startswith("When did Virgin Australia start operating?\n\nVirgin Australia")


def test_odd_turns_drop_is_counted(shared_data):
    report = ReadReport()
    with pytest.raises(DataError, match="no examples"):
        read_examples(shared_data / "eval/koala/koala_test_set.jsonl", odd_turns=OddTurns.DROP, report=report)
    assert report.dropped["odd number of turns (no final response)"] == 180


def write_lines(path, lines):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_malformed_json_names_the_line(tmp_path):
    path = write_lines(tmp_path / "x.jsonl", [b'{"conversations": ["q", "a"]}', b"", b'{"conversations": [}'])
    with pytest.raises(DataError, match=r"x\.jsonl:3: malformed JSON"):
        read_examples(path)


def test_skip_bad_counts_and_keeps_going(tmp_path):
    path = write_lines(tmp_path / "x.jsonl", [b'{"conversations": ["q", "a"]}', b"{oops", b"\xff\xfe",
                                             b'{"conversations": ["q", ""]}', b'{"conversations": ["q2", "a"]}'])
    report = ReadReport()
    examples = read_examples(path, skip_bad=True, report=report)
    assert [ex.conversations[0] for ex in examples] == ["q", "q2"]
    assert report.kept == 2 and sum(report.skipped_bad.values()) == 3
    assert any(":3: invalid UTF-8" in line for line in report.first_bad)


def test_invalid_utf8_in_json_array_names_the_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b'[\n {"instruction": "q", "output": "a"},\n {"instruction": "\xff", "output": "b"}\n]')
    with pytest.raises(DataError, match=r"a\.json:3: invalid UTF-8"):
        read_examples(path)


def test_array_record_errors_name_the_record_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n {"instruction": "q", "input": "", "output": "a"},\n'
                    ' {"instruction": "q2", "input": "", "output": 5}\n]')
    with pytest.raises(DataError, match=r"a\.json:3: field 'output': expected a string, got int"):
        read_examples(path)


def test_unknown_format_lists_known_ones(tmp_path):
    path = write_lines(tmp_path / "x.jsonl", [b'{"foo": 1}'])
    with pytest.raises(DataError, match="known formats: gair-lima, instruction-response, alpaca"):
        read_examples(path)
    with pytest.raises(LimaError, match="unknown format 'csv'"):
        read_examples(path, "csv")


def test_sharegpt_roles_must_alternate(tmp_path):
    row = {"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]}
    path = write_lines(tmp_path / "s.jsonl", [json.dumps(row).encode()])
    with pytest.raises(DataError, match=r"s\.jsonl:1: field 'conversations\[1\]': expected role 'assistant'"):
        read_examples(path)


def test_missing_file_and_directory_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_examples(tmp_path / "nope.jsonl")
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match="not a saved Hugging Face dataset"):
        read_examples(tmp_path / "d")


def test_convert_writes_json_array_for_alpaca(lima_train, tmp_path):
    report = convert(lima_train, tmp_path / "alpaca.json", "alpaca")
    assert report.kept == 1022
    rows = json.loads((tmp_path / "alpaca.json").read_text())
    assert isinstance(rows, list) and set(rows[0]) >= {"instruction", "input", "output"}
