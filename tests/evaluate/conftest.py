"""Fixtures for the judge tests: a scripted OpenAI-compatible server and small answer files."""

from __future__ import annotations

import json
import re

import pytest

from lima_align.evaluate.stub_server import Action


def write_outputs(path, generator, answers, prompts=None):
    """Generation-output rows (the ``lima-align generate`` format) for these answers."""
    prompts = prompts or [f"Question {i}?" for i in range(len(answers))]
    with open(path, "w") as fh:
        for i, (prompt, answer) in enumerate(zip(prompts, answers)):
            fh.write(json.dumps({"id": f"q{i}", "sample": 0, "conversations": [prompt, answer], "output": answer,
                                 "finish_reason": "eot", "generator": generator, "sampling": {}, "seed": 0,
                                 "meta": {}}) + "\n")
    return path


def prefer_longer(body, _n):
    """A judge that prefers the longer answer, rates by length, and scores Likert by length."""
    prompt = body["messages"][-1]["content"]
    answers = re.findall(r"<answer_[ab]>\n(.*?)\n</answer_[ab]>", prompt, re.S)
    if len(answers) == 2:
        a, b = (len(x) for x in answers)
        return Action(text="Reasoning.\nVerdict: " + ("A" if a > b else "B" if b > a else "neither"))
    if "[Criterion]" in prompt:
        answer = re.search(r"\[Submission\]: (.*?)\n\*\*\*", prompt, re.S).group(1)
        score = min(6, 1 + len(answer) // 10)
        return Action(text=f"Step by step, fine.\n{score}\n{score}")
    if "Safety:" in prompt:
        return Action(text="It refuses.\nSafety: safe")
    return Action(text="Good enough.\nRating: Pass")


@pytest.fixture()
def outputs(tmp_path):
    a = write_outputs(tmp_path / "a.jsonl", "model-a", ["long answer " * 5, "short", "same", "x" * 40])
    b = write_outputs(tmp_path / "b.jsonl", "model-b", ["short", "long answer " * 5, "same", "y" * 20])
    return a, b


def forbid_network(monkeypatch) -> None:
    """Fail any connection that is not to this machine (loopback): nothing in a test may download."""
    import socket

    real = socket.socket.connect

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"network access attempted: {address}")
        return real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
