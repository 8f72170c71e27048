"""The judge, report and select commands end to end against the scripted server; every shipped judge YAML
loads; a judge run killed with SIGKILL mid-way and re-run loses and duplicates nothing."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lima_align.cli import judge as judge_cli
from lima_align.cli import report as report_cli
from lima_align.evaluate.judge_config import JudgeConfig, load_judge_config
from lima_align.evaluate.stub_server import Action, stub_server

from .conftest import prefer_longer, write_outputs

REPO = Path(__file__).resolve().parents[2]


def cli(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    judge_cli.register(sub)
    report_cli.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_every_shipped_judge_yaml_loads():
    files = sorted((REPO / "configs" / "judges").glob("*.yaml"))
    assert len(files) >= 4
    for path in files:
        config = load_judge_config(path)
        assert isinstance(config, JudgeConfig) and config.name == path.stem


def test_judge_all_protocols_then_report(outputs, tmp_path, capsys):
    a, b = outputs
    convs = tmp_path / "convs.jsonl"
    convs.write_text(json.dumps({"id": "c1", "conversations": ["Hi", "Hello!", "More?", "Sure."],
                                 "source": "test"}) + "\n")
    with stub_server(prefer_longer) as server:
        common = ["--base-url", server.base_url, "--model", "stub", "--cache", str(tmp_path / "c.sqlite")]
        assert cli(["judge", "pairwise", "--a", str(a), "--b", str(b), "--out", str(tmp_path / "pw.jsonl"),
                    *common]) == 0
        assert cli(["judge", "likert", "--outputs", str(a), "--out", str(tmp_path / "lk.jsonl"), *common]) == 0
        assert cli(["judge", "absolute", "--outputs", str(a), "--out", str(tmp_path / "ab.jsonl"), *common]) == 0
        assert cli(["judge", "absolute", "--safety", "--outputs", str(b), "--out", str(tmp_path / "sf.jsonl"),
                    *common]) == 0
        assert cli(["judge", "multiturn", "--conversations", str(convs), "--out", str(tmp_path / "mt.jsonl"),
                    *common]) == 0
        assert server.calls == 8 + 4 + 4 + 4 + 2
    mt = json.loads((tmp_path / "mt.jsonl").read_text())
    assert mt["verdict"] == ["pass", "pass"] and [c["tag"] for c in mt["calls"]] == ["turn-1", "turn-2"]
    files = [str(tmp_path / f"{n}.jsonl") for n in ("pw", "lk", "ab", "sf", "mt")]
    assert cli(["report", *files, "--out", str(tmp_path / "report")]) == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert {g["protocol"] for g in summary} == {"pairwise", "likert", "absolute", "safety", "multiturn"}
    pw = next(g for g in summary if g["protocol"] == "pairwise")
    assert pw["outcomes"]["counts"] == {"win": 2, "tie": 1, "loss": 1}
    assert (tmp_path / "report" / "pairwise.png").stat().st_size > 1000
    assert (tmp_path / "report" / "likert.svg").read_text().lstrip().startswith("<?xml")


def test_pairwise_against_davinci003_baseline(shared_data, tmp_path):
    davinci = shared_data / "eval" / "alpaca_eval" / "text_davinci_003_model_outputs.json"
    rows = json.loads(davinci.read_text())[:3]
    ours = write_outputs(tmp_path / "ours.jsonl", "ours", ["A short answer."] * 3, [r["instruction"] for r in rows])
    with stub_server(prefer_longer) as server:
        cli(["judge", "pairwise", "--a", str(ours), "--b", str(davinci), "--out", str(tmp_path / "j.jsonl"),
             "--base-url", server.base_url, "--model", "stub", "--no-cache"])
    got = [json.loads(x) for x in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert len(got) == 3 and {r["models"]["b"] for r in got} == {"text_davinci_003"}
    assert [r["answers"]["b"] for r in sorted(got, key=lambda r: r["id"])] == [r["output"] for r in rows]


def test_calibrate_on_hhh(shared_data, tmp_path, capsys):
    hhh = shared_data / "eval" / "hhh_alignment"
    if not hhh.is_dir():
        pytest.skip(f"shared data absent: {hhh}")
    with stub_server(prefer_longer) as server:
        cli(["judge", "calibrate", "--hhh", str(hhh), "--out", str(tmp_path / "cal.jsonl"), "--limit", "20",
             "--base-url", server.base_url, "--model", "stub", "--cache", str(tmp_path / "c.sqlite")])
    summary = json.loads(capsys.readouterr().out)
    assert summary["items"] == 20 and summary["missing"] == 0
    assert summary["position"]["consistency"] == 1.0  # a length-only judge never flips with the order
    assert summary["length"]["longer_wins_rate"] == 1.0
    assert 0 <= summary["accuracy"] <= summary["tie_discounted_accuracy"] <= 1
    assert summary["accuracy_ci95"][0] <= summary["accuracy"] <= summary["accuracy_ci95"][1]


def _first_shown_wins(body, _n):
    """A weighted stub judge that mostly prefers the first answer, a little the longer one."""
    import math
    import re

    first, second = (len(x) for x in re.findall(r"<answer_[ab]>\n(.*?)\n</answer_[ab]>",
                                                 body["messages"][-1]["content"], re.S))
    return Action(logprobs={"A": math.log(0.6 + 0.1 * (first > second)), "B": math.log(0.2), "C": math.log(0.1)})


def test_calibrate_weighted_on_hhh(shared_data, tmp_path, capsys):
    hhh = shared_data / "eval" / "hhh_alignment"
    if not hhh.is_dir():
        pytest.skip(f"shared data absent: {hhh}")
    with stub_server(_first_shown_wins) as server:
        cli(["judge", "calibrate", "--hhh", str(hhh), "--out", str(tmp_path / "cal.jsonl"), "--limit", "12",
             "--base-url", server.base_url, "--model", "stub", "--mode", "weighted", "--no-cache"])
        assert server.requests[0]["logprobs"] is True and server.requests[0]["max_tokens"] == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["missing"] == 0 and summary["first_position_rate"] == 0.5  # by construction
    assert summary["weighted"]["raw_first_position_rate"] == 1.0  # while every single call says "A"
    assert "accuracy" in captured.err and "first-position rate 0.500" in captured.err


_SERVE_SLOW = """
import sys, time
from lima_align.evaluate.stub_server import Action, stub_server
with stub_server(lambda body, n: (time.sleep(0.05), Action(text="x\\n4\\n4"))[1]) as s:
    print(s.base_url, flush=True)
    time.sleep(120)
"""


def test_sigkill_mid_run_then_rerun_loses_and_duplicates_nothing(tmp_path):
    answers = write_outputs(tmp_path / "a.jsonl", "m", [f"answer {i}" for i in range(40)])
    server = subprocess.Popen([sys.executable, "-c", _SERVE_SLOW], stdout=subprocess.PIPE, text=True)
    try:
        base_url = server.stdout.readline().strip()
        out, cache = tmp_path / "lk.jsonl", tmp_path / "c.sqlite"
        argv = ["judge", "likert", "--outputs", str(answers), "--out", str(out), "--cache", str(cache),
                "--base-url", base_url, "--model", "stub", "--set", "concurrency=2"]
        runner = ("import argparse, sys\nfrom lima_align.cli import judge\np = argparse.ArgumentParser()\n"
                  "judge.register(p.add_subparsers(dest='c'))\na = p.parse_args(sys.argv[1:])\nsys.exit(a.func(a))")
        first = subprocess.Popen([sys.executable, "-c", runner, *argv], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while (not out.exists() or len(out.read_text().splitlines()) < 5) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        done_before = len(out.read_text().splitlines())
        assert 5 <= done_before < 40
        assert subprocess.run([sys.executable, "-c", runner, *argv], stderr=subprocess.DEVNULL).returncode == 0
        rows = [json.loads(x) for x in out.read_text().splitlines()]
        assert sorted(r["id"] for r in rows) == sorted(f"q{i}" for i in range(40))  # none lost, none twice
        assert all(r["verdict"] == 4 for r in rows)
    finally:
        server.kill()
        server.wait()
