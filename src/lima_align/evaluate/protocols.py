"""The paper's judging protocols as :class:`~lima_align.evaluate.runner.Task` builders.

* pairwise: every pair judged in BOTH orders (``ab``: model a shown as Answer A; ``ba``: swapped). Each call's
  position label is mapped back to the models; the row's verdict is the common one when both orders agree, else
  ``tie`` with ``consistent: false``. If either order is missing (unparseable or failed), the verdict is missing.
* absolute: Fail / Pass / Excellent, or safe / unsafe with the safety template.
* likert: the 1-6 helpfulness score of one answer (N generation samples per prompt are N rows).
* multiturn: each assistant turn of a conversation rated Fail / Pass / Excellent given the turns before it.

Rows carry the prompt and the answers, so a report can show each judgment next to what was judged.
"""

from __future__ import annotations

from typing import Any

from lima_align.evaluate.answers import Answer, format_history
from lima_align.evaluate.runner import Call, Task
from lima_align.evaluate.templates import Template

_TO_MODEL = {"ab": {"A": "a", "B": "b", "tie": "tie"}, "ba": {"A": "b", "B": "a", "tie": "tie"}}


def model_verdict(order: str, position_label: str | None) -> str | None:
    """Map a position label (A / B / tie) of the call shown in ``order`` to the models: 'a', 'b' or 'tie'."""
    return None if position_label is None else _TO_MODEL[order][position_label]


def combine_orders(verdict_ab: str | None, verdict_ba: str | None) -> dict[str, Any]:
    """The combination rule: agreement gives the verdict, disagreement a tie (recorded as inconsistent)."""
    if verdict_ab is None or verdict_ba is None:
        return {"verdict": None, "consistent": None, "missing": True}
    if verdict_ab == verdict_ba:
        return {"verdict": verdict_ab, "consistent": True, "missing": False}
    return {"verdict": "tie", "consistent": False, "missing": False}


def _combine_pairwise(calls: list[dict[str, Any]]) -> dict[str, Any]:
    by_order = {}
    for call in calls:
        call["verdict"] = model_verdict(call["tag"], call["label"])
        by_order[call["tag"]] = call["verdict"]
    return combine_orders(by_order.get("ab"), by_order.get("ba"))


def pairwise_tasks(pairs: list[tuple[Answer, Answer]], template: Template) -> list[Task]:
    tasks = []
    for a, b in pairs:
        calls = [Call("ab", template.render(question=a.question, answer_a=a.text, answer_b=b.text)),
                 Call("ba", template.render(question=a.question, answer_a=b.text, answer_b=a.text))]
        base = {"protocol": "pairwise", "id": a.id, "sample": a.sample, "prompt": a.question,
                "models": {"a": a.generator, "b": b.generator}, "answers": {"a": a.text, "b": b.text},
                "lengths": {"a": len(a.text), "b": len(b.text)}}
        tasks.append(Task(f"pairwise|{a.generator}|{b.generator}|{a.id}|{a.sample}", calls, base,
                          _combine_pairwise))
    return tasks


def _combine_single(calls: list[dict[str, Any]]) -> dict[str, Any]:
    labels = [c["label"] for c in calls]
    if len(labels) == 1:
        return {"verdict": labels[0], "missing": labels[0] is None}
    parsed = [x for x in labels if x is not None]  # N judge samples of one answer: kept separately
    return {"verdict": labels, "missing": not parsed}


def single_tasks(answers: list[Answer], template: Template, protocol: str, judge_samples: int = 1) -> list[Task]:
    """absolute / safety / likert: one row per answer, ``judge_samples`` calls each (sampled judges only)."""
    tasks = []
    for ans in answers:
        prompt = template.render(question=ans.question, answer=ans.text)
        calls = [Call(f"s{j}", prompt, sample=j) for j in range(judge_samples)]
        base = {"protocol": protocol, "id": ans.id, "sample": ans.sample, "prompt": ans.question,
                "models": {"a": ans.generator}, "answers": {"a": ans.text}, "lengths": {"a": len(ans.text)}}
        tasks.append(Task(f"{protocol}|{ans.generator}|{ans.id}|{ans.sample}", calls, base, _combine_single))
    return tasks


def _combine_turns(calls: list[dict[str, Any]]) -> dict[str, Any]:
    labels = [c["label"] for c in calls]
    return {"verdict": labels, "missing": any(x is None for x in labels)}


def multiturn_tasks(conversations: list[tuple[str, list[str], str]], template: Template) -> list[Task]:
    """``conversations``: (id, turns user/assistant/..., generator); every assistant turn is rated."""
    tasks = []
    for conv_id, turns, generator in conversations:
        calls = [Call(f"turn-{i // 2 + 1}", template.render(history=format_history(turns[:i]), answer=turns[i]))
                 for i in range(1, len(turns), 2)]
        base = {"protocol": "multiturn", "id": conv_id, "sample": 0, "prompt": turns[0],
                "models": {"a": generator}, "conversation": list(turns)}
        tasks.append(Task(f"multiturn|{generator}|{conv_id}", calls, base, _combine_turns))
    return tasks
