"""Statistics against hand-computed values (95% level: z = 1.959964, z^2 = 3.841459)."""

import math

import numpy as np
import pytest
from scipy import stats

from lima_align.evaluate.intervals import (design_effect, effective_n, mean_difference, rate_cis, rate_interval,
                                           wilson_interval)
from lima_align.evaluate.statistics import (agreement_table, compare_likert, label_rates, length_bias,
                                            likert_summary, position_consistency, tie_discounted_agreement,
                                            win_tie_loss)
from lima_align.evaluate.tie_conventions import combined_rates, pairwise_conventions, per_call_rates, row_weights


# ----------------------------------------------------------------------------------------------- Wilson
def test_wilson_by_hand_at_0_and_n_of_5():
    # x = n: centre (1 + z^2/2n) / (1 + z^2/n), half z/(1 + z^2/n) * sqrt(z^2/4n^2) = (z^2/2n) / (1 + z^2/n),
    # so lo = 1 / (1 + z^2/n) = n / (n + z^2) = 5 / 8.841459 = 0.565518 and hi = 1.
    # x = 0: by symmetry [0, z^2 / (n + z^2)] = [0, 3.841459 / 8.841459] = [0, 0.434482].
    lo, hi = wilson_interval(5, 5)
    assert (float(lo), float(hi)) == pytest.approx((0.565518, 1.0), abs=1e-6)
    lo, hi = wilson_interval(0, 5)
    assert (float(lo), float(hi)) == pytest.approx((0.0, 0.434482), abs=1e-6)
    # and scipy's own Wilson agrees for an interior count
    ref = stats.binomtest(7, 20).proportion_ci(method="wilson")
    assert [float(x) for x in wilson_interval(7, 20)] == pytest.approx([ref.low, ref.high], abs=1e-12)


def test_design_effect_and_effective_n_by_hand():
    # 4 prompts x 4 samples with 3, 1, 2, 2 wins: p = 8/16 = 0.5; residuals s_i - p m_i = 1, -1, 0, 0
    # var over prompts = k/(k-1) * sum r^2 / n^2 = 4/3 * 2 / 256 = 0.0104167; binomial p(1-p)/n = 0.015625
    # deff = 0.666667; t(0.975, 3) = 3.182446, (t/z)^2 = 2.636519 -> inflation max(1, 1.757679) -> n_eff 9.10301
    sums, sizes = np.array([3.0, 1, 2, 2]), np.full(4, 4.0)
    assert float(design_effect(sums, sizes)) == pytest.approx(2 / 3)
    assert float(effective_n(sums, sizes)) == pytest.approx(9.10301, abs=1e-5)
    # Wilson at p = 0.5, n = 9.10301: z^2/n = 0.422005, half = z/1.422005 * sqrt(0.25/n + z^2/4n^2) = 0.272380
    r = rate_cis(sums, sizes)
    assert (float(r["lo"]), float(r["hi"])) == pytest.approx((0.22762, 0.77238), abs=1e-5)
    assert not r["bootstrap"]  # 4 prompts: far too few for the bootstrap


def test_samples_of_one_prompt_are_not_independent_evidence():
    # 2 prompts x 5 samples, all wins: at a rate of 1 the design effect is unknown, so each prompt counts once:
    # Wilson 2/2 -> [2 / (2 + 3.841459), 1] = [0.342380, 1]; as 10 independent rows it would be [0.722467, 1]
    clustered = rate_interval([1.0] * 10, ["p1"] * 5 + ["p2"] * 5)
    assert clustered["ci"] == pytest.approx([0.342380, 1.0], abs=1e-6)
    assert clustered["ci_method"] == "wilson" and clustered["design"] == "2 prompts x 5 samples"
    assert rate_interval([1.0] * 10)["ci"] == pytest.approx([0.722467, 1.0], abs=1e-6)


# ------------------------------------------------------------------------------------------------ rates
def test_win_tie_loss_rates_and_missing():
    # 10 verdicts: 5 wins, 2 ties, 2 losses, 1 missing -> rates over the 9 judged; win + tie/2 = 6/9
    r = win_tie_loss(["a"] * 5 + ["tie"] * 2 + ["b"] * 2 + [None])
    assert (r["n"], r["missing"]) == (9, 1)
    assert r["counts"] == {"win": 5, "tie": 2, "loss": 2}
    assert r["win"] == pytest.approx(5 / 9) and r["tie"] == pytest.approx(2 / 9) and r["loss"] == pytest.approx(2 / 9)
    assert r["win_plus_half_tie"] == pytest.approx(6 / 9)
    assert (r["n_prompts"], r["n_samples"], r["win_ci_method"]) == (9, 9, "wilson")
    for k in ("win", "tie", "loss"):
        lo, hi = r[f"{k}_ci"]
        assert 0 <= lo < r[k] < hi <= 1


def test_no_rate_interval_collapses_at_0_or_1():
    # 20 wins out of 20 (one per prompt): Wilson [20 / 23.841459, 1] = [0.838875, 1]; losses [0, 0.161125]
    r = win_tie_loss(["a"] * 20)
    assert r["win_ci"] == pytest.approx([0.838875, 1.0], abs=1e-6)
    assert r["loss_ci"] == pytest.approx([0.0, 0.161125], abs=1e-6)
    # even with 300 prompts the all-0 rate keeps a positive upper bound: 3.841459 / 303.841459 = 0.012643
    big = win_tie_loss(["a", "b"] * 150)
    assert big["tie_ci"] == pytest.approx([0.0, 0.012643], abs=1e-6) and big["tie_ci_method"] == "wilson"


def test_cluster_bootstrap_at_300_prompts():
    # 300 prompts at p = 0.5, one sample each: close to the normal interval 0.5 +- 1.96 * sqrt(.25/300)
    r = win_tie_loss(["a", "b"] * 150, [f"q{i}" for i in range(300)], n_boot=4000)
    half = 1.96 * math.sqrt(0.25 / 300)
    assert r["win_ci_method"] == "cluster-bootstrap"
    assert r["win_ci"] == pytest.approx([0.5 - half, 0.5 + half], abs=0.012)
    # the same 300 prompts with every verdict duplicated (2 samples each, perfectly correlated): NOT narrower
    twice = win_tie_loss([v for v in ["a", "b"] * 150 for _ in (0, 1)], [f"q{i // 2}" for i in range(600)],
                         n_boot=4000)
    assert twice["win_ci"][1] - twice["win_ci"][0] == pytest.approx(2 * half, abs=0.012)
    assert twice["design"] == "300 prompts x 2 samples"
    assert win_tie_loss(["a", "b"] * 40, seed=3) == win_tie_loss(["a", "b"] * 40, seed=3)  # reproducible


def test_label_rates_by_prompt():
    r = label_rates(["fail", "pass", "excellent", "excellent", None], ("fail", "pass", "excellent"))
    assert (r["n"], r["missing"], r["excellent"], r["fail"]) == (4, 1, 0.5, 0.25)
    # two prompts x 2: (excellent, excellent), (fail, pass): excellent 2/4, per-prompt residuals 1, -1
    r = label_rates(["excellent", "excellent", "fail", "pass"], ("fail", "pass", "excellent"), ["p", "p", "q", "q"])
    assert r["design"] == "2 prompts x 2 samples" and r["excellent"] == 0.5
    # k = 2: t(0.975, 1) = 12.706205, (t/z)^2 = 42.0275, deff = (2 * (1 + 1) / 16) / (0.25 / 4) = 4 -> n_eff
    # = 4 / 168.11 = 0.023794: Wilson at p = 0.5 and that n is nearly [0, 1]
    assert r["excellent_ci"][0] < 0.02 and r["excellent_ci"][1] > 0.98


# ----------------------------------------------------------------------------------------------- Likert
def test_likert_mean_and_two_sided_ci_without_prompt_ids():
    # 1..5 (each its own prompt): mean 3, sd sqrt(2.5), se = 0.70711, t(0.975, 4) = 2.77645 -> 3 +- 1.96324
    s = likert_summary([1, 2, 3, 4, 5, None])
    assert (s["n"], s["missing"], s["mean"]) == (5, 1, 3.0)
    assert s["sd"] == pytest.approx(math.sqrt(2.5))
    assert s["ci"] == pytest.approx([3 - 1.96324, 3 + 1.96324], abs=1e-4)
    # [4, 4, 5, 6]: mean 4.75, sd = sqrt(2.75/3) = 0.95743, se 0.47871, t(0.975, 3) = 3.18245 -> +- 1.52348
    assert likert_summary([4, 4, 5, 6])["ci"] == pytest.approx([4.75 - 1.52348, 4.75 + 1.52348], abs=1e-4)
    one = likert_summary([6])
    assert one["mean"] == 6 and math.isnan(one["ci"][0])


def test_likert_ci_has_the_prompt_as_its_unit():
    # 4 prompts x 2 samples: (2, 4) (5, 5) (4, 6) (1, 3) -> prompt means 3, 5, 5, 2: mean 3.75,
    # sd = sqrt((0.5625 + 1.5625 + 1.5625 + 3.0625) / 3) = 1.5, se 0.75, t(0.975, 3) = 3.182446 -> +- 2.386835
    scores = [2, 4, 5, 5, 4, 6, 1, 3]
    s = likert_summary(scores, ["p1", "p1", "p2", "p2", "p3", "p3", "p4", "p4"])
    assert (s["mean"], s["sd"], s["n_prompts"], s["n_samples"]) == (3.75, 1.5, 4, 8)
    assert s["ci"] == pytest.approx([3.75 - 2.386835, 3.75 + 2.386835], abs=1e-6)
    assert s["design"] == "4 prompts x 2 samples" and s["ci_method"] == "t-over-prompts"
    assert s["prompt_means"] == {"p1": 3.0, "p2": 5.0, "p3": 5.0, "p4": 2.0}
    # as 8 independent samples (the old interval): sd = sqrt(19.5 / 7) = 1.669046, se 0.590097,
    # t(0.975, 7) = 2.364624 -> +- 1.395357: narrower than the prompts warrant
    old = likert_summary(scores)
    assert old["ci"] == pytest.approx([3.75 - 1.395357, 3.75 + 1.395357], abs=1e-5)


def test_paired_difference_on_three_prompts_by_hand():
    # differences 1, 2, 1: mean 4/3, sd sqrt(1/3) = 0.577350, se 0.333333, t(0.975, 2) = 4.302653 -> +- 1.434218
    d = mean_difference({"p1": 4.0, "p2": 5.0, "p3": 3.0}, {"p3": 2.0, "p1": 3.0, "p2": 3.0})  # order irrelevant
    assert d["ci_method"] == "paired-t" and d["df"] == 2 and d["n_prompts"]["paired"] == 3
    assert d["diff"] == pytest.approx(4 / 3)
    assert d["ci"] == pytest.approx([4 / 3 - 1.434218, 4 / 3 + 1.434218], abs=1e-6)


def test_welch_difference_when_the_prompts_differ():
    # a: 4, 5, 3 (mean 4, var 1); b: 3, 3, 2, 4 (mean 3, var 2/3): se^2 = 1/3 + (2/3)/4 = 0.5;
    # Welch df = 0.5^2 / ((1/3)^2 / 2 + (1/6)^2 / 3) = 0.25 / 0.0648148 = 3.857143; t(0.975, 3.857) = 2.817474
    # -> 1 +- 2.817474 * 0.707107 = 1 +- 1.992255
    d = mean_difference({"p1": 4.0, "p2": 5.0, "p3": 3.0}, {"q1": 3.0, "q2": 3.0, "q3": 2.0, "q4": 4.0})
    assert d["ci_method"] == "welch-t" and d["df"] == pytest.approx(3.857143, abs=1e-6)
    assert d["ci"] == pytest.approx([1 - 1.992255, 1 + 1.992255], abs=1e-5)


def test_compare_likert_pairs_two_arms_by_prompt():
    ids = ["p1", "p1", "p2", "p2", "p3", "p3"]
    a = likert_summary([4, 4, 5, 5, 3, 3], ids)  # prompt means 4, 5, 3
    b = likert_summary([3, 3, 3, 3, 2, 2], ids)  # 3, 3, 2 -> the paired case above
    d = compare_likert(a, b)
    assert d["ci"] == pytest.approx([4 / 3 - 1.434218, 4 / 3 + 1.434218], abs=1e-6)
    assert d["n_samples"] == {"a": 6, "b": 6}
    # unpaired on the same numbers the interval is wider: pairing removes the between-prompt variation
    c = likert_summary([3, 3, 3, 3, 2, 2], ["q1", "q1", "q2", "q2", "q3", "q3"])
    unpaired = compare_likert(a, c)
    assert unpaired["ci_method"] == "welch-t"
    assert unpaired["ci"][1] - unpaired["ci"][0] > d["ci"][1] - d["ci"][0]


# ------------------------------------------------------------------------------------ tie conventions
def _row(ab, ba, consistent, la, lb, verdict, id_="q"):
    calls = [{"tag": "ab", "label": ab, "verdict": {"A": "a", "B": "b", "tie": "tie"}.get(ab)},
             {"tag": "ba", "label": ba, "verdict": {"A": "b", "B": "a", "tie": "tie"}.get(ba)}]
    return {"id": id_, "calls": calls, "consistent": consistent, "lengths": {"a": la, "b": lb}, "verdict": verdict}


CONVENTION_ROWS = [_row("A", "B", True, 1, 2, "a", "q1"),     # a both orders
                   _row("A", "A", False, 1, 2, "tie", "q2"),  # first position both times: a, then b
                   _row("A", "tie", False, 1, 2, "tie", "q3"),  # a, then tie
                   _row("tie", "tie", True, 1, 2, "tie", "q4"),
                   _row("B", "A", True, 1, 2, "b", "q5"),     # b both orders
                   _row(None, "B", None, 1, 2, None, "q6")]   # ab unparsed: the row is missing


def test_row_weights_under_each_policy():
    assert row_weights(CONVENTION_ROWS[2], "disagreement=tie") == (0.0, 1.0, 0.0)
    assert row_weights(CONVENTION_ROWS[2], "average") == (0.5, 0.5, 0.0)  # A-then-tie: half win, half tie
    assert row_weights(CONVENTION_ROWS[1], "average") == (0.5, 0.0, 0.5)  # A-then-B: half win, half loss
    assert row_weights(CONVENTION_ROWS[5], "average") is None
    with pytest.raises(ValueError, match="unknown tie policy"):
        row_weights(CONVENTION_ROWS[0], "ignore")


def test_each_tie_convention_by_hand():
    c = pairwise_conventions(CONVENTION_ROWS)
    tie = c["disagreement=tie"]  # rows: a, tie, tie, tie, b (q6 missing): 1/5, 3/5, 1/5; win + tie/2 = 2.5/5
    assert (tie["n"], tie["missing"], tie["policy"]) == (5, 1, "disagreement=tie")
    assert [tie[k] for k in ("win", "tie", "loss", "win_plus_half_tie")] == pytest.approx([0.2, 0.6, 0.2, 0.5])
    avg = c["average"]  # (1,0,0) (.5,0,.5) (.5,.5,0) (0,1,0) (0,0,1): 2/5, 1.5/5, 1.5/5; win + tie/2 = 2.75/5
    assert avg["counts"] == {"win": 2, "tie": 1.5, "loss": 1.5}
    assert [avg[k] for k in ("win", "tie", "loss", "win_plus_half_tie")] == pytest.approx([0.4, 0.3, 0.3, 0.55])
    calls = c["per_call"]  # 11 parsed calls: a a | a b | a tie | tie tie | b b | - a -> 5 win, 3 tie, 3 loss
    assert (calls["n"], calls["missing"], calls["n_prompts"]) == (11, 1, 6)
    assert [calls[k] for k in ("win", "tie", "loss")] == pytest.approx([5 / 11, 3 / 11, 3 / 11])
    assert calls["by_order"]["ab"]["win"] == pytest.approx(3 / 5)  # a a a tie b
    assert calls["by_order"]["ba"]["counts"] == {"win": 2, "tie": 2, "loss": 2}
    # decided calls (A/B labels): AB, AA, A, BA, B = 8, the first-shown answer picked 5 times
    first = calls["first_position"]
    assert first["decided_calls"] == 8 and first["rate"] == pytest.approx(5 / 8)
    assert first["ci"][0] < 5 / 8 < first["ci"][1]
    for r in (tie, avg, calls):
        assert all(r[f"{k}_ci"][0] < r[f"{k}_ci"][1] for k in ("win", "tie", "loss"))


def test_a_call_both_rows_share_is_resampled_with_its_prompt():
    # the per-call rates count 2 calls per pair, but the prompt stays the unit: 5 prompts, not 10 rows
    r = per_call_rates([_row("A", "B", True, 1, 2, "a", f"q{i}") for i in range(5)])
    assert r["design"] == "5 prompts x 2 calls" and r["win_ci"] == pytest.approx([0.565518, 1.0], abs=1e-6)
    assert combined_rates([_row("A", "B", True, 1, 2, "a", f"q{i}") for i in range(5)])["win_ci"][0] < 0.6


# ------------------------------------------------------------------------------------ judge behaviour
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


# ------------------------------------------------------------------------------------------ agreement
def test_tie_discounted_agreement_by_hand():
    x = {"1": "a", "2": "b", "3": "tie", "4": "a", "5": "a", "6": None}
    y = {"1": "a", "2": "tie", "3": "tie", "4": "b", "5": "tie", "6": "a"}
    # scores: 1, 0.5, 1, 0, 0.5 over 5 shared labelled items -> 3 / 5; exact 2 / 5
    r = tie_discounted_agreement(x, y)
    assert (r["n"], r["agreement"], r["exact"]) == (5, 0.6, 0.4)
    assert r["agreement_ci"][0] < 0.6 < r["agreement_ci"][1] and r["exact_ci_method"] == "wilson"
    # items 1-2 and 3-5 on two prompts: the interval has 2 units, not 5, and widens
    by_prompt = tie_discounted_agreement(x, y, cluster_of=lambda k: "p" if k in "12" else "q")
    assert by_prompt["n_prompts"] == 2
    assert by_prompt["agreement_ci"][1] - by_prompt["agreement_ci"][0] > r["agreement_ci"][1] - r["agreement_ci"][0]
    table = agreement_table({"human": x, "judge": y, "other": x})
    assert [(t["x"], t["y"], t["agreement"]) for t in table] == [
        ("human", "judge", 0.6), ("human", "other", 1.0), ("judge", "other", 0.6)]


def test_a_weighted_judges_row_is_counted_by_each_orders_own_verdict():
    # the weighted protocol writes the combined verdict 'a' into both calls; on its own ba said tie
    row = {"id": "q1", "verdict": "a", "per_order_verdicts": {"ab": "a", "ba": "tie"},
           "calls": [{"tag": "ab", "label": "A", "raw_label": "A", "verdict": "a"},
                     {"tag": "ba", "label": "B", "raw_label": "tie", "verdict": "a"}]}
    assert row_weights(row, "average") == (0.5, 0.5, 0.0)
    calls = per_call_rates([row])
    assert calls["counts"] == {"win": 1, "tie": 1, "loss": 0} and calls["first_position"]["decided_calls"] == 1


def test_position_consistency_of_weighted_rows_also_describes_their_single_calls():
    from lima_align.evaluate.statistics import position_consistency

    # weighted rows: every call puts the first-shown answer on top (raw_label A); the averaged verdict is "b" in
    # both calls' label (consistent by construction)
    rows = [{"consistent": True, "per_order_consistent": False,
             "calls": [{"tag": "ab", "label": "B", "raw_label": "A"}, {"tag": "ba", "label": "A", "raw_label": "A"}]}
            for _ in range(4)]
    pos = position_consistency(rows)
    assert pos["consistency"] == 1.0 and pos["first_position_win_rate"] == 0.5  # the averaged verdicts
    single = pos["single_calls"]
    assert single["consistency"] == 0.0 and single["first_position_win_rate"] == 1.0 and single["decided_calls"] == 8
    generated = [{"consistent": True, "calls": [{"tag": "ab", "label": "A"}, {"tag": "ba", "label": "B"}]}]
    assert position_consistency(generated)["consistency"] == 1.0 and "single_calls" not in position_consistency(generated)
