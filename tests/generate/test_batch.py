import json
import subprocess
import sys

import pytest

from lima_align.errors import DataError
from lima_align.generate.batch import generate_file
from lima_align.generate.engine import HFEngine
from lima_align.generate.decoding import SamplingConfig

CONFIG = SamplingConfig(max_new_tokens=6, seed=1)


@pytest.fixture()
def prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    rows = [{"id": f"q{i}", "prompt": text} for i, text in enumerate(["Name a colour.", "Say hi.", "Count to 3."])]
    rows.append({"id": "conv", "conversations": ["first", "an old answer", "and now?"]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    (tmp_path / "conv.jsonl").write_text(json.dumps(rows[3]) + "\n")
    return path


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rows_carry_what_evaluation_needs(model, tokenizer, prompts, tmp_path):
    out = tmp_path / "out.jsonl"
    report = generate_file(HFEngine(model, tokenizer), prompts, out, CONFIG, samples=2, generator="tiny")
    assert (report.prompts, report.requested, report.written) == (3, 6, 6)
    rows = read_rows(out)
    assert sorted((r["id"], r["sample"]) for r in rows) == [(f"q{i}", s) for i in range(3) for s in range(2)]
    for r in rows:
        assert r["generator"] == "tiny" and r["sampling"]["temperature"] == 0.7 and isinstance(r["seed"], int)
        assert r["finish_reason"] in ("eot", "eos", "length")
        assert r["completion_tokens"] <= 6 and r["prompt_tokens"] > 0
        assert r["conversations"][0] == {"q0": "Name a colour.", "q1": "Say hi.", "q2": "Count to 3."}[r["id"]]
    assert report.generated_tokens == sum(r["completion_tokens"] for r in rows)


def test_an_answered_conversation_is_asked_again(model, tokenizer, prompts, tmp_path):
    out = tmp_path / "out.jsonl"
    generate_file(HFEngine(model, tokenizer), tmp_path / "conv.jsonl", out, CONFIG)
    (row,) = read_rows(out)
    assert row["conversations"][:3] == ["first", "an old answer", "and now?"]


def test_resume_skips_done_rows_and_cuts_a_torn_line(model, tokenizer, prompts, tmp_path):
    engine = HFEngine(model, tokenizer)
    out = tmp_path / "out.jsonl"
    generate_file(engine, prompts, out, CONFIG, samples=2)
    full = read_rows(out)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][:20])  # killed while writing the 4th row
    report = generate_file(engine, prompts, out, CONFIG, samples=2)
    assert (report.already_done, report.written, report.torn_lines_dropped) == (3, 3, 1)
    again = read_rows(out)
    assert len(again) == 6
    # same seeds, same texts: the resumed rows equal the ones of the uninterrupted run
    key = lambda r: (r["id"], r["sample"])  # noqa: E731
    assert sorted(map(json.dumps, sorted(again, key=key))) == sorted(map(json.dumps, sorted(full, key=key)))
    assert generate_file(engine, prompts, out, CONFIG, samples=2).written == 0


def test_a_resume_with_other_settings_is_refused_and_leaves_the_file_as_it_was(model, tokenizer, prompts, tmp_path):
    engine = HFEngine(model, tokenizer)
    out = tmp_path / "out.jsonl"
    generate_file(engine, prompts, out, CONFIG, generator="tiny")
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:2]))  # two of three done
    before = out.read_bytes()
    other = SamplingConfig(max_new_tokens=6, seed=2)
    with pytest.raises(DataError, match=r"out.jsonl:1: written with another sampling .*'seed': 1.*'seed': 2"):
        generate_file(engine, prompts, out, other, generator="tiny")
    with pytest.raises(DataError, match=r"out.jsonl:1: written with another generator \('tiny'; this run: 'x'\)"):
        generate_file(engine, prompts, out, CONFIG, generator="x")
    assert out.read_bytes() == before
    assert generate_file(engine, prompts, out, CONFIG, generator="tiny").written == 1


def test_refuses_to_append_to_a_foreign_file(model, tokenizer, prompts, tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"something": "else"}\n')
    with pytest.raises(DataError, match="out.jsonl:1: not a generation output row"):
        generate_file(HFEngine(model, tokenizer), prompts, out, CONFIG)


def test_duplicate_prompt_ids_are_refused(model, tokenizer, tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n')
    with pytest.raises(DataError, match="duplicate prompt id 'a'"):
        generate_file(HFEngine(model, tokenizer), path, tmp_path / "o.jsonl", CONFIG)


def test_cli_on_a_saved_checkpoint(make_model, tokenizer, prompts, tmp_path, shared_data):
    ckpt = tmp_path / "ckpt"
    make_model(4096).save_pretrained(ckpt)
    tokenizer.save_pretrained(ckpt)
    out = tmp_path / "cli.jsonl"
    cmd = [sys.executable, "-m", "lima_align", "generate", "--model", str(ckpt), "--prompts",
           str(shared_data / "eval/mt_bench/question.jsonl"), "--out", str(out), "--max-new-tokens", "3",
           "--samples", "1", "--temperature", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(out)
    assert len(rows) == 80 and all(r["sampling"]["temperature"] == 0 for r in rows)
    bad = subprocess.run(cmd[:-2] + ["--top-p", "2"], capture_output=True, text=True)
    assert bad.returncode == 2 and "top_p must be in (0, 1]" in bad.stderr


def test_cli_refuses_a_model_without_eot(tmp_path, prompts, make_model):
    from lima_align.models import load_tokenizer

    plain = load_tokenizer("smollm2-135m-instruct")  # no EOT added
    ckpt = tmp_path / "base"
    make_model().save_pretrained(ckpt)
    plain.save_pretrained(ckpt)
    cmd = [sys.executable, "-m", "lima_align", "generate", "--model", str(ckpt), "--prompts", str(prompts),
           "--out", str(tmp_path / "o.jsonl"), "--max-new-tokens", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2 and "has no <|eot|> token" in proc.stderr and "--add-eot" in proc.stderr
    assert subprocess.run(cmd + ["--add-eot"], capture_output=True, text=True).returncode == 0
