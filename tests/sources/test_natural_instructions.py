"""Super-NaturalInstructions source on the real task files (both schemas) and on broken ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lima_align.cli import main
from lima_align.errors import DataError
from lima_align.sources import natural_instructions as sni


@pytest.fixture(scope="module")
def tasks_dir(shared_data: Path) -> Path:
    return shared_data / "natural_instructions"


def run_cli(*argv: str) -> int:
    return main(["curate", *argv])


def test_real_tasks_keep_generation_only(tasks_dir: Path, tmp_path: Path) -> None:
    out, rep = tmp_path / "sni.jsonl", tmp_path / "sni.report.json"
    assert run_cli("natural-instructions", str(tasks_dir), "--out", str(out), "--report", str(rep)) == 0
    report = json.loads(rep.read_text())
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert report["considered"] == 8
    assert report["kept"] + sum(report["rejected"].values()) + sum(report["skipped_bad"].values()) == 8
    assert report["kept"] == len(rows) == 2
    assert report["rejected"] == {"not_generation_category": 6}
    generation = sni.load_generation_categories()
    for row in rows:
        task = json.loads((tasks_dir / row["meta"]["curation"]["file"]).read_text())
        inst = task["Instances"][row["meta"]["curation"]["instance_index"]]
        assert row["conversations"] == [f"{task['Definition'].strip()}\n\n{inst['input'].strip()}",
                                        inst["output"][0].strip()]
        assert any(c.lower() in generation for c in task["Categories"])
        assert row["source"] == "natural_instructions" and row["meta"]["license"]


def test_final_schema_uses_instance_ids_and_licence(tasks_dir: Path) -> None:
    examples, report = sni.curate([tasks_dir / "task062_bigbench_repeat_copy_logic.json"],
                                  categories=frozenset({"program execution"}), seed=3)
    (ex,) = examples
    assert ex.meta["source_id"].startswith("task062-") and ex.id == "sni-" + ex.meta["source_id"]
    assert ex.meta["license"] == "Apache 2.0" and ex.meta["url"] == "https://github.com/google/BIG-bench"
    assert ex.meta["curation"]["schema"] == "final"
    assert ex.prompt.startswith("This task evaluates")


def test_draw_is_seeded_per_task(tasks_dir: Path) -> None:
    task = sni.read_task(tasks_dir / "task305_jeopardy_answer_generation_normal.json")
    assert sni.draw_instance(task, 1) == sni.draw_instance(task, 1)
    assert len({sni.draw_instance(task, s)[0] for s in range(5)}) > 1


def test_task_sampling_counts_left_out_tasks(tasks_dir: Path) -> None:
    cats = frozenset({"answer generation", "classification"})
    examples, report = sni.curate([tasks_dir], n_tasks=3, seed=0, categories=cats)
    assert len(examples) == 3 and report.dropped["not_sampled"] == 3
    again, _ = sni.curate([tasks_dir], n_tasks=3, seed=0, categories=cats)
    assert [e.id for e in again] == [e.id for e in examples]


def test_bad_task_files_are_counted_or_raise(tasks_dir: Path, tmp_path: Path) -> None:
    shutil.copy(tasks_dir / "task305_jeopardy_answer_generation_normal.json", tmp_path)
    (tmp_path / "task900_missing.json").write_text(json.dumps({"Categories": ["Summarization"],
                                                               "Instances": []}))
    (tmp_path / "task901_truncated.json").write_text('{\n  "Definition": "x",\n  "Instances": [\n')
    examples, report = sni.curate([tmp_path])
    assert len(examples) == 1 and sum(report.skipped_bad.values()) == 2
    assert any("task900_missing.json: field 'Definition'" in line for line in report.first_bad)
    assert any("task901_truncated.json:4" in line for line in report.first_bad)
    with pytest.raises(DataError, match="task900_missing.json"):
        sni.curate([tmp_path], skip_bad=False)


def test_nothing_kept_is_an_error(tasks_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("natural-instructions", str(tasks_dir / "task318_stereoset_classification_gender.json"),
                   "--out", str(tmp_path / "x.jsonl")) == 2
    assert "lima-align: error: no examples kept from 1 considered" in capsys.readouterr().err
    assert (tmp_path / "x.report.json").exists() and not (tmp_path / "x.jsonl").exists()
