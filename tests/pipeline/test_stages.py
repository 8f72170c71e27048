"""Stage markers and content keys: skip when unchanged, redo from scratch when changed, resume when interrupted."""

from __future__ import annotations

import json

import pytest

from lima_align.fileio import FULL_HASH_LIMIT, file_digest, fingerprint
from lima_align.pipeline.stages import Stages


def _stage(tmp_path, calls, fail=False):
    def fn():
        calls.append(1)
        out = tmp_path / "result"
        out.mkdir(exist_ok=True)
        (out / f"part{len(calls)}").write_text("x")
        if fail:
            raise RuntimeError("killed half-way")
        return {"summary": "ok"}
    return fn


def test_same_key_skips_changed_key_redoes_from_scratch(tmp_path):
    calls, logs = [], []
    out = tmp_path / "result"
    first = Stages(tmp_path, logs.append).run("s", _stage(tmp_path, calls), key={"a": 1}, outputs=[out])
    again = Stages(tmp_path, logs.append).run("s", _stage(tmp_path, calls), key={"a": 1}, outputs=[out])
    assert len(calls) == 1 and again["key"] == first["key"] == fingerprint({"a": 1})
    assert "skipped" in logs[-1]
    Stages(tmp_path, logs.append).run("s", _stage(tmp_path, calls), key={"a": 2}, outputs=[out])
    assert len(calls) == 2
    assert any("settings or inputs changed" in line for line in logs)
    assert sorted(p.name for p in out.iterdir()) == ["part2"]  # the old output was deleted first


def test_interrupted_stage_resumes_without_deleting_and_missing_outputs_rerun(tmp_path):
    calls, logs = [], []
    out = tmp_path / "result"
    with pytest.raises(RuntimeError):
        Stages(tmp_path, logs.append).run("s", _stage(tmp_path, calls, fail=True), key="k", outputs=[out])
    assert (tmp_path / "stages" / "s.started.json").is_file() and not (tmp_path / "stages" / "s.json").exists()
    Stages(tmp_path, logs.append).run("s", _stage(tmp_path, calls), key="k", outputs=[out])
    assert any("interrupted earlier, resuming" in line for line in logs)
    assert sorted(p.name for p in out.iterdir()) == ["part1", "part2"]  # partial work kept for the resume
    assert not (tmp_path / "stages" / "s.started.json").exists()
    marker = json.loads((tmp_path / "stages" / "s.json").read_text())
    assert marker["summary"] == "ok" and marker["key"] == fingerprint("k")

    import shutil

    shutil.rmtree(out)
    Stages(tmp_path, logs.append).run("s", _stage(tmp_path, calls), key="k", outputs=[out])
    assert len(calls) == 3 and any("outputs missing" in line for line in logs)


def test_file_digest_follows_content_and_names(tmp_path):
    a = tmp_path / "d" / "a.txt"
    a.parent.mkdir()
    a.write_text("one")
    d1, f1 = file_digest(a.parent), file_digest(a)
    a.write_text("two")
    assert file_digest(a) != f1 and file_digest(a.parent) != d1
    a.rename(a.with_name("b.txt"))
    assert file_digest(a.parent) not in (d1,) and file_digest(tmp_path / "nope") == "missing"


def test_large_files_are_identified_without_reading_them_whole(tmp_path):
    big = tmp_path / "dump.xml"
    with big.open("wb") as fh:
        fh.truncate(FULL_HASH_LIMIT + 10)
    digest = file_digest(big)
    assert digest.startswith(f"large:{FULL_HASH_LIMIT + 10}:")
    with big.open("r+b") as fh:  # a rewrite (new tail, new modification time) changes the identity
        fh.seek(FULL_HASH_LIMIT + 5)
        fh.write(b"x")
    assert file_digest(big) != digest


def test_protected_stage_refuses_a_changed_key_naming_what_changed(tmp_path):
    from lima_align.errors import LimaError

    calls, out = [], tmp_path / "result"
    Stages(tmp_path, lambda m: None).run("train", _stage(tmp_path, calls), key={"train": {"lr": 1}, "data": "x"},
                                         outputs=[out], protect="run with --from train")
    with pytest.raises(LimaError, match=r"train: its settings or inputs changed since it ran \(train.lr\); run with"):
        Stages(tmp_path, lambda m: None).run("train", _stage(tmp_path, calls),
                                             key={"train": {"lr": 2}, "data": "x"}, outputs=[out], protect="run with")
    assert len(calls) == 1 and (out / "part1").is_file()  # nothing deleted


def test_digests_are_cached_by_path_size_and_time(tmp_path, monkeypatch):
    import lima_align.fileio as fileio

    f = tmp_path / "dump.csv"
    f.write_text("a,b\n")
    reads = []
    real = fileio._digest
    monkeypatch.setattr(fileio, "_digest", lambda *a: reads.append(a[0]) or real(*a))
    first = Stages(tmp_path / "run", lambda m: None).digest(f)
    again = Stages(tmp_path / "run", lambda m: None).digest(f)  # a new run: the cache file is read back
    assert first == again and len(reads) == 1
    f.write_text("a,b,c\n")
    assert Stages(tmp_path / "run", lambda m: None).digest(f) != first and len(reads) == 2


def test_status_and_forget_read_the_markers_without_running_anything(tmp_path):
    calls, out = [], tmp_path / "result"
    assert Stages(tmp_path).status(["a", "b"]) == [("a", "not run"), ("b", "not run")]
    assert not (tmp_path / "stages").exists()  # asking creates nothing
    Stages(tmp_path, lambda m: None, total=2).run("a", _stage(tmp_path, calls), key=1, outputs=[out])
    with pytest.raises(RuntimeError):
        Stages(tmp_path, lambda m: None).run("b", _stage(tmp_path, calls, fail=True), key=1)
    (a_name, a_state), (b_name, b_state) = Stages(tmp_path).status(["a", "b"])
    assert a_name == "a" and a_state.startswith("done in ") and a_state.endswith(": ok")
    assert (b_name, b_state) == ("b", "interrupted (a run resumes it)")
    Stages(tmp_path).forget(["a", "b"])
    assert Stages(tmp_path).status(["a", "b"]) == [("a", "not run"), ("b", "not run")]
    lines = []
    Stages(tmp_path, lines.append, total=2).run("a", _stage(tmp_path, calls), key=1, outputs=[out])
    assert len(calls) == 3 and lines[0] == "[1/2] a ..."  # forgotten: it ran again


def test_the_train_key_follows_the_weights_not_the_logistics():
    from dataclasses import replace

    from lima_align.pipeline.steps import train_identity
    from lima_align.train.config import TrainConfig

    base = TrainConfig()
    same = [replace(base, strategy="fsdp2"), replace(base, keep_epochs="all"), replace(base, tensorboard=False),
            replace(base, data="elsewhere.jsonl", out="runs/moved")]  # data enters the key by its content digest
    assert all(train_identity(c) == train_identity(base) for c in same)
    assert train_identity(replace(base, lr=2e-5)) != train_identity(base)
    assert train_identity(replace(base, epochs=10)) != train_identity(base)
