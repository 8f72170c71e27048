"""Win / tie / loss of pairwise rows under each named tie convention, so a number says how it was counted.

Each pair is judged in both orders (``ab``: model a shown first; ``ba``: swapped). The same calls give different
rates depending on how the two orders and ties are counted, and the paper's 44/21/35 does not say which it used:

* ``per_call``: every parsed call counted on its own (n = calls), with each order apart (``by_order``) and how
  often a decided call picks the answer shown FIRST (``first_position``; 0.5 = no position preference).
* ``disagreement=tie`` (the default, and the row ``verdict`` the protocol writes): a pair wins only when both
  orders say so; any disagreement is a tie.
* ``average``: each order counts half: A-then-tie is 0.5 win + 0.5 tie, A-then-B 0.5 win + 0.5 loss.
  When every row has both orders parsed its rates equal ``per_call``'s (a mean over the same calls); they
  differ where one order is missing (``per_call`` keeps the parsed one, ``average`` drops the row).

Every convention also gives the alpaca_eval-style win rate ``win_plus_half_tie`` (win + tie / 2). Rows whose
row verdict is missing (an order unparsed) are missing under both combined policies alike. A weighted judge's
row (``per_order_verdicts``, calls with ``raw_label``) writes the combined verdict into both calls; its
per-call and ``average`` rates use each order's OWN verdict instead, else they would repeat the combined one.
Pure functions.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from lima_align.evaluate.statistics import outcome_rates, rates, win_tie_loss

POLICIES = ("disagreement=tie", "average")
DEFAULT_POLICY = "disagreement=tie"
CONVENTIONS = ("per_call", *POLICIES)
LABELS = {"per_call": "per call (each order counted separately)",
          "disagreement=tie": "combined, disagreement=tie (default: both orders must agree)",
          "average": "combined, average (each order counts half)"}
_ONE_HOT = {"a": (1.0, 0.0, 0.0), "tie": (0.0, 1.0, 0.0), "b": (0.0, 0.0, 1.0)}


def prompt_id(row: Mapping[str, Any], index: int) -> str:
    """The row's prompt id (the cluster of every interval); a row without one is its own prompt."""
    return str(row["id"]) if "id" in row else f"#row-{index}"


def own_verdict(row: Mapping[str, Any], call: Mapping[str, Any]) -> str | None:
    """The verdict of this call's order alone (a weighted judge's row keeps it in ``per_order_verdicts``)."""
    return (row.get("per_order_verdicts") or {}).get(call.get("tag"), call.get("verdict"))


def own_label(call: Mapping[str, Any]) -> str | None:
    """The position label this call's order gave on its own (A / B / tie)."""
    return call.get("raw_label", call.get("label"))


def row_weights(row: Mapping[str, Any], policy: str = DEFAULT_POLICY) -> tuple[float, float, float] | None:
    """(win, tie, loss) weights of one pairwise row under ``policy``; None when the row's verdict is missing.
    A row with one call (a human label shows one order) is that call under both policies."""
    if policy not in POLICIES:
        raise ValueError(f"unknown tie policy {policy!r}; use one of {POLICIES}")
    verdict = row.get("verdict")
    if verdict is None:
        return None
    calls = [v for c in row.get("calls", ()) if (v := own_verdict(row, c)) is not None]
    if policy == "disagreement=tie" or not calls:
        return _ONE_HOT[verdict]
    return tuple(sum(_ONE_HOT[v][i] for v in calls) / len(calls) for i in range(3))  # type: ignore[return-value]


def combined_rates(rows: list[Mapping[str, Any]], policy: str = DEFAULT_POLICY, *, n_boot: int = 2000,
                   seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Rates over combined rows (one per pair) under ``policy``, with ``policy`` and ``missing`` in the result."""
    weighted = [(w, prompt_id(r, i)) for i, r in enumerate(rows) if (w := row_weights(r, policy)) is not None]
    result = outcome_rates([w for w, _ in weighted], [p for _, p in weighted], level=level, n_boot=n_boot,
                           seed=seed)
    return {"convention": policy, "policy": policy, **result, "missing": len(rows) - len(weighted)}


def per_call_rates(rows: list[Mapping[str, Any]], *, n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95) -> dict[str, Any]:
    """Rates over single calls (each order counted), each order apart, and the first-position rate."""
    calls = [({"tag": c.get("tag"), "verdict": own_verdict(r, c), "label": own_label(c)}, prompt_id(r, i))
             for i, r in enumerate(rows) for c in r.get("calls", ())]
    kw = {"n_boot": n_boot, "seed": seed, "level": level}
    pooled = win_tie_loss([c["verdict"] for c, _ in calls], [p for _, p in calls], unit="call", **kw)
    by_order = {}
    for tag in ("ab", "ba"):
        mine = [(c, p) for c, p in calls if c["tag"] == tag]
        if mine:
            by_order[tag] = win_tie_loss([c["verdict"] for c, _ in mine], [p for _, p in mine], unit="call", **kw)
    decided = [(c, p) for c, p in calls if c["label"] in ("A", "B")]
    first = rates({"rate": [float(c["label"] == "A") for c, _ in decided]}, [p for _, p in decided], unit="call",
                  **kw)
    first_position = {"decided_calls": len(decided), "rate": first["rate"], "ci": first["rate_ci"],
                      "ci_method": first["rate_ci_method"], "design": first["design"]}
    return {"convention": "per_call", **pooled, "calls": len(calls), "by_order": by_order,
            "first_position": first_position}


def pairwise_conventions(rows: Iterable[Mapping[str, Any]], *, n_boot: int = 2000, seed: int = 0,
                         level: float = 0.95) -> dict[str, dict[str, Any]]:
    """Every convention's rates, keyed by its name (``per_call``, ``disagreement=tie``, ``average``)."""
    rows = list(rows)
    kw = {"n_boot": n_boot, "seed": seed, "level": level}
    return {"per_call": per_call_rates(rows, **kw),
            **{policy: combined_rates(rows, policy, **kw) for policy in POLICIES}}

