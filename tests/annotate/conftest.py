"""Fixtures: small outputs files, a study database, and a live server on 127.0.0.1 for the HTTP tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lima_align.annotate import db
from lima_align.annotate.study import StudyConfig, add_annotator, create_study, pairwise_items

XSS = ("Here is code <script>window.__pwned = 1</script> and <img src=x onerror=\"window.__pwned = 2\"> and "
       "[click me](javascript:window.__pwned=3) and ![tracker](http://127.0.0.1:9/pixel.png) done.")


def write_outputs(path: Path, generator: str, n: int, answer=lambda i: f"answer {i}") -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            prompt = f"Question number {i}?"
            out = answer(i)
            fh.write(json.dumps({"id": f"q{i}", "sample": 0, "generator": generator, "output": out,
                                 "conversations": [prompt, out]}) + "\n")
    return path


@pytest.fixture
def outputs(tmp_path: Path) -> tuple[Path, Path]:
    a = write_outputs(tmp_path / "lima.jsonl", "lima-65b", 6,
                      lambda i: XSS if i == 0 else f"**LIMA** answer {i}\n\n- point one\n- point two")
    b = write_outputs(tmp_path / "davinci.jsonl", "davinci003", 6, lambda i: f"Davinci answer {i}")
    return a, b


@pytest.fixture
def study_db(tmp_path: Path, outputs) -> dict:
    """A pairwise study with 6 items, all shared, annotators alice and bob; returns paths and tokens."""
    path = tmp_path / "study.sqlite"
    conn = db.connect(path)
    _, admin = create_study(conn, "pw", "pairwise", pairwise_items(*outputs), StudyConfig(seed=1))
    st = db.study(conn, "pw")
    tokens = {name: add_annotator(conn, st, name) for name in ("alice", "bob")}
    conn.close()
    return {"db": path, "admin": admin, "tokens": tokens, "outputs": outputs}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db_path: Path, port: int) -> subprocess.Popen:
    """``lima-align annotate serve`` as a real process; waits until it answers."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    code = ("import sys, uvicorn; from lima_align.annotate.app import create_app; "
            "uvicorn.run(create_app(sys.argv[1]), host='127.0.0.1', port=int(sys.argv[2]), log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code, str(db_path), str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read().decode()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start in 30 s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def server(study_db):
    port = free_port()
    proc = start_server(study_db["db"], port)
    yield {**study_db, "url": f"http://127.0.0.1:{port}", "proc": proc}
    stop_server(proc)
