"""The command line, run as a real subprocess: exit codes, one-line errors, JSON output."""

import json
import subprocess
import sys

import pytest


def run(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "lima_align", *args], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_stats_json_on_the_lima_training_set(lima_train):
    out = json.loads(run("data", "stats", str(lima_train), "--json").stdout)
    assert out["total"]["examples"] == 1022
    assert out["unit"] == "whitespace words"
    assert set(out["sources"]) == {"lima_train_instruction_response"}
    assert out["total"]["total_tokens"] == out["total"]["input_tokens"] + out["total"]["output_tokens"]


@pytest.mark.parametrize("fmt", ["gair-lima", "sharegpt", "messages", "alpaca"])
def test_convert_there_and_back(lima_train, tmp_path, fmt):
    mid, back = tmp_path / f"mid.{fmt}", tmp_path / "back.jsonl"
    run("data", "convert", str(lima_train), str(mid), "--to", fmt)
    run("data", "convert", str(mid), str(back), "--to", "instruction-response")
    original = [json.loads(line) for line in lima_train.read_text().splitlines()]
    again = [json.loads(line) for line in back.read_text().splitlines()]
    assert [(r["instruction"], r["response"]) for r in again] == \
        [(r["instruction"], r["response"]) for r in original]


def test_user_error_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversations": ["q", "a"]}\n{"conversations": ["q", 1]}\n')
    proc = run("data", "stats", str(bad), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"lima-align: error: {bad}:2: field 'conversations[1]': expected a string, got int"]
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(tmp_path):
    proc = run("--debug", "data", "stats", str(tmp_path / "missing.jsonl"), check=False)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "DataError" in proc.stderr


def test_unknown_format_error_lists_formats(tmp_path):
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"text_a": "x"}\n')
    proc = run("data", "convert", str(odd), str(tmp_path / "o.jsonl"), "--to", "sharegpt", check=False)
    assert proc.returncode == 2 and "known formats: gair-lima" in proc.stderr


def test_skip_bad_reports_counts(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversations": ["q", "a"]}\n{broken\n')
    proc = run("data", "stats", str(bad), "--skip-bad", "--json")
    assert json.loads(proc.stdout)["total"]["examples"] == 1
    assert "dropped 1" in proc.stderr and ":2: malformed JSON" in proc.stderr


def test_odd_turns_drop_option(shared_data, tmp_path):
    proc = run("data", "convert", str(shared_data / "eval/mt_bench/question.jsonl"), str(tmp_path / "o.jsonl"),
               "--to", "gair-lima", "--odd-turns", "drop", check=False)
    assert proc.returncode == 2 and "no examples" in proc.stderr


def test_models_list_json():
    rows = json.loads(run("models", "list", "--json").stdout)
    assert {r["name"] for r in rows} == {"gemma-3-270m", "smollm2-135m-instruct"}
    assert all(r["installed"] for r in rows)


def test_help_lists_commands():
    out = run("--help").stdout
    for command in ("data", "models", "curate"):
        assert command in out
