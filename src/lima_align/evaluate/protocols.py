"""The paper's judging protocols as :class:`~lima_align.evaluate.runner.Task` builders.

* pairwise: every pair judged in BOTH orders (``ab``: model a shown as Answer A; ``ba``: swapped). Each call's
  position label is mapped back to the models; the row's verdict is the common one when both orders agree, else
  ``tie`` with ``consistent: false``. If either order is missing (unparseable or failed), the verdict is missing.
  Weighted mode (:func:`combine_weighted`): each order's distribution over A / B / tie is mapped to the models
  and the two are averaged, P(a wins) = (P(A | ab) + P(B | ba)) / 2. The row records the per-order and
  combined distributions (``probs``), the soft preference ``soft_preference`` = P(a) + P(tie) / 2 (0.5: no
  preference) and the hard ``verdict``: the argmax of the combined distribution, a tie when a and b are exactly
  level. The combined judge sees no order, so ``consistent`` is true, and each call's ``label`` / ``verdict``
  are the combined verdict in that call's position / model terms (``raw_label``: the call's own argmax): the
  first-position rate of the verdicts is 0.5 by construction.
* absolute: Fail / Pass / Excellent, or safe / unsafe with the safety template.
* likert: the 1-6 helpfulness score of one answer (N generation samples per prompt are N rows). Weighted: the
  verdict is the most probable score, ``expected_score`` the mean of the distribution ``probs`` over 1-6.
* multiturn: each assistant turn of a conversation rated Fail / Pass / Excellent given the turns before it.

Rows carry the prompt and the answers, so a report can show each judgment next to what was judged.
"""

from __future__ import annotations

from typing import Any

from lima_align.evaluate.answers import Answer, format_history
from lima_align.evaluate.runner import Call, Task
from lima_align.evaluate.templates import Template

_TO_MODEL = {"ab": {"A": "a", "B": "b", "tie": "tie"}, "ba": {"A": "b", "B": "a", "tie": "tie"}}
_TO_POSITION = {order: {m: p for p, m in labels.items()} for order, labels in _TO_MODEL.items()}


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


def order_probs(order: str, probs: dict[str, float]) -> dict[str, float]:
    """A call's position distribution (A / B / tie) as the models': a / b / tie."""
    return {_TO_MODEL[order][label]: p for label, p in probs.items()}


def hard_verdict(probs: dict[str, float]) -> str:
    """The argmax of a combined a / b / tie distribution; a and b exactly level is a tie."""
    if probs["a"] == probs["b"] and probs["a"] >= probs["tie"]:
        return "tie"
    return max(("a", "b", "tie"), key=lambda k: probs[k])


def combine_weighted(probs_ab: dict[str, float] | None, probs_ba: dict[str, float] | None) -> dict[str, Any]:
    """Average the two orders' distributions (position terms in, model terms out); missing if either is."""
    if probs_ab is None or probs_ba is None:
        return {"verdict": None, "consistent": None, "missing": True, "soft_preference": None,
                "probs": {"ab": probs_ab and order_probs("ab", probs_ab),
                          "ba": probs_ba and order_probs("ba", probs_ba), "combined": None}}
    ab, ba = order_probs("ab", probs_ab), order_probs("ba", probs_ba)
    combined = {k: (ab[k] + ba[k]) / 2 for k in ("a", "b", "tie")}
    return {"verdict": hard_verdict(combined), "consistent": True, "missing": False,
            "soft_preference": combined["a"] + combined["tie"] / 2,
            "probs": {"ab": ab, "ba": ba, "combined": combined}}


def _combine_weighted_pairwise(calls: list[dict[str, Any]]) -> dict[str, Any]:
    by_order = {call["tag"]: call for call in calls}
    row = combine_weighted(by_order["ab"]["probs"], by_order["ba"]["probs"])
    raw = {order: model_verdict(order, call["label"]) for order, call in by_order.items()}
    row["per_order_verdicts"] = raw
    row["per_order_consistent"] = None if None in raw.values() else raw["ab"] == raw["ba"]
    for order, call in by_order.items():  # the combined judge's verdict, in this call's position terms
        call["raw_label"] = call["label"]
        call["verdict"] = row["verdict"]
        call["label"] = None if row["verdict"] is None else _TO_POSITION[order][row["verdict"]]
        call["missing"] = call["label"] is None
    return row


def _combine_pairwise(calls: list[dict[str, Any]]) -> dict[str, Any]:
    if "probs" in calls[0]:
        return _combine_weighted_pairwise(calls)
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


def expected_score(probs: dict[str, float] | None) -> float | None:
    """The mean of a distribution over numeric labels ("1".."6"); None for other labels or a missing one."""
    if not probs or not all(label.isdigit() for label in probs):
        return None
    return sum(int(label) * p for label, p in probs.items())


def _weighted_fields(calls: list[dict[str, Any]], single: bool) -> dict[str, Any]:
    if "probs" not in calls[0]:
        return {}
    probs = [c["probs"] for c in calls]
    scores = [expected_score(p) for p in probs]
    out: dict[str, Any] = {"probs": probs[0] if single else probs}
    if any(s is not None for s in scores):
        out["expected_score"] = scores[0] if single else scores
    return out


def _combine_single(calls: list[dict[str, Any]]) -> dict[str, Any]:
    labels = [c["label"] for c in calls]
    extra = _weighted_fields(calls, single=len(labels) == 1)
    if len(labels) == 1:
        return {"verdict": labels[0], "missing": labels[0] is None, **extra}
    parsed = [x for x in labels if x is not None]  # N judge samples of one answer: kept separately
    return {"verdict": labels, "missing": not parsed, **extra}


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
    return {"verdict": labels, "missing": any(x is None for x in labels), **_weighted_fields(calls, False)}


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
