"""Statistics against hand-computed values."""

import math

import pytest

from lima_align.evaluate.statistics import (agreement_table, label_rates, length_bias, likert_summary,
                                            position_consistency, t_quantile, tie_discounted_agreement,
                                            win_tie_loss)


def test_win_tie_loss_rates_and_missing():
    # 10 verdicts: 5 wins, 2 ties, 2 losses, 1 missing -> rates over the 9 judged
    r = win_tie_loss(["a"] * 5 + ["tie"] * 2 + ["b"] * 2 + [None])
    assert (r["n"], r["missing"]) == (9, 1)
    assert r["counts"] == {"win": 5, "tie": 2, "loss": 2}
    assert r["win"] == pytest.approx(5 / 9) and r["tie"] == pytest.approx(2 / 9) and r["loss"] == pytest.approx(2 / 9)
    for k in ("win", "tie", "loss"):
        lo, hi = r[f"{k}_ci"]
        assert 0 <= lo <= r[k] <= hi <= 1


def test_bootstrap_ci_degenerate_and_large_sample():
    r = win_tie_loss(["a"] * 20)
    assert r["win_ci"] == [1.0, 1.0] and r["loss_ci"] == [0.0, 0.0]
    # 300 items at p = 0.5: the bootstrap CI should be close to the normal one, 0.5 +- 1.96 * sqrt(.25/300)
    r = win_tie_loss(["a", "b"] * 150, n_boot=4000)
    half = 1.96 * math.sqrt(0.25 / 300)
    assert r["win_ci"][0] == pytest.approx(0.5 - half, abs=0.012)
    assert r["win_ci"][1] == pytest.approx(0.5 + half, abs=0.012)
    assert win_tie_loss(["a", "b"] * 10, seed=3) == win_tie_loss(["a", "b"] * 10, seed=3)  # reproducible


def test_t_quantiles_match_tables():
    assert t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-4)
    assert t_quantile(0.975, 4) == pytest.approx(2.7764, abs=1e-4)
    assert t_quantile(0.975, 29) == pytest.approx(2.0452, abs=1e-4)
    assert t_quantile(0.95, 10) == pytest.approx(1.8125, abs=1e-4)


def test_likert_mean_and_two_sided_ci():
    # 1..5: mean 3, sd sqrt(2.5), se = sqrt(2.5/5) = 0.70711, t(0.975, 4) = 2.77645 -> 3 +- 1.96324
    s = likert_summary([1, 2, 3, 4, 5, None])
    assert (s["n"], s["missing"], s["mean"]) == (5, 1, 3.0)
    assert s["sd"] == pytest.approx(math.sqrt(2.5))
    assert s["ci"] == pytest.approx([3 - 1.96324, 3 + 1.96324], abs=1e-4)
    # [4, 4, 5, 6]: mean 4.75, sd = sqrt(2.75/3) = 0.95743, se 0.47871, t(0.975, 3) = 3.18245 -> +- 1.52348
    assert likert_summary([4, 4, 5, 6])["ci"] == pytest.approx([4.75 - 1.52348, 4.75 + 1.52348], abs=1e-4)
    one = likert_summary([6])
    assert one["mean"] == 6 and math.isnan(one["ci"][0])


def _row(ab, ba, consistent, la, lb, verdict):
    calls = [{"tag": "ab", "label": ab, "verdict": {"A": "a", "B": "b", "tie": "tie"}.get(ab)},
             {"tag": "ba", "label": ba, "verdict": {"A": "b", "B": "a", "tie": "tie"}.get(ba)}]
    return {"calls": calls, "consistent": consistent, "lengths": {"a": la, "b": lb}, "verdict": verdict}


def test_position_consistency_and_length_bias():
    rows = [_row("A", "B", True, 100, 10, "a"),   # a wins both orders; a is longer
            _row("A", "A", False, 100, 10, "tie"),  # always the first position: flips
            _row("B", "A", True, 10, 100, "b"),   # b wins both orders; b is longer
            _row("tie", "tie", True, 50, 10, "tie"),
            _row(None, "A", None, 10, 100, None)]
    pc = position_consistency(rows)
    assert pc["pairs"] == 4 and pc["consistency"] == 0.75 and pc["flip_rate"] == 0.25
    # decided calls: A,B, A,A, B,A, A (last row's ba) = 7, first position won in A,A,A,A,A = 5
    assert pc["decided_calls"] == 7 and pc["first_position_win_rate"] == pytest.approx(5 / 7)
    lb = length_bias(rows)
    # calls with a/b verdicts and unequal lengths: row1 a,a (longer a: 2/2), row2 a,b (1/2), row3 b,b (2/2),
    # row5 ba:A -> b, longer b (1/1): 6 of 7
    assert lb["calls"] == 7 and lb["longer_wins_rate"] == pytest.approx(6 / 7)
    assert lb["rows"] == 2 and lb["longer_wins_rate_combined"] == 1.0


def test_tie_discounted_agreement_by_hand():
    x = {"1": "a", "2": "b", "3": "tie", "4": "a", "5": "a", "6": None}
    y = {"1": "a", "2": "tie", "3": "tie", "4": "b", "5": "tie", "6": "a"}
    # scores: 1, 0.5, 1, 0, 0.5 over 5 shared labelled items -> 3 / 5
    r = tie_discounted_agreement(x, y)
    assert r == {"n": 5, "agreement": 0.6, "exact": 0.4}
    table = agreement_table({"human": x, "judge": y, "other": x})
    assert [(t["x"], t["y"], t["agreement"]) for t in table] == [
        ("human", "judge", 0.6), ("human", "other", 1.0), ("judge", "other", 0.6)]


def test_label_rates():
    r = label_rates(["fail", "pass", "excellent", "excellent", None], ("fail", "pass", "excellent"))
    assert (r["n"], r["missing"], r["excellent"], r["fail"]) == (4, 1, 0.5, 0.25)
