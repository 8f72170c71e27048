"""Length-controlled win rate: synthetic judges whose only bias (or only signal) is known, and hand-checked
edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lima_align.evaluate.length_control import length_controlled_by_pair, length_controlled_win_rate


def row(pid, verdict, len_a, len_b, **extra):
    """A pairwise judgment row with the keys the runner writes (answers elided)."""
    return {"protocol": "pairwise", "id": pid, "sample": extra.pop("sample", 0),
            "models": {"a": "lima", "b": "base"},
            "lengths": {"a": int(len_a), "b": int(len_b)}, "verdict": verdict,
            "missing": verdict is None and "soft_preference" not in extra, **extra}


def length_judge(seed, n, *, samples=1, gap=250.0, p_longer=0.85, prefer="longer"):
    """Two equally good models; a's answers are longer on average (gap chars, sd 250 chars, so about 16% of
    the rows have a shorter). The judge looks at length only: within 20 chars it says tie, otherwise it picks
    the longer (or the shorter) answer with probability ``p_longer``. At equal lengths it would say 0.5."""
    rng = np.random.default_rng(seed)
    m = n * samples
    len_b = rng.integers(200, 600, m)
    len_a = np.maximum(len_b + rng.normal(gap, 250.0, m).round(), 1)
    delta = len_a - len_b
    favoured = np.where(delta > 0, "a", "b") if prefer == "longer" else np.where(delta > 0, "b", "a")
    other = np.where(favoured == "a", "b", "a")
    verdicts = np.where(np.abs(delta) < 20, "tie", np.where(rng.random(m) < p_longer, favoured, other))
    ids = [f"p{i}" for i in range(n) for _ in range(samples)]
    return [row(pid, str(v), a, b, sample=k % samples) for k, (pid, v, a, b) in
            enumerate(zip(ids, verdicts, len_a, len_b))]


def better_judge(seed, n, *, p_a=0.8, lengths="equal"):
    """Model a truly better: the judge prefers it with probability p_a whatever the lengths."""
    rng = np.random.default_rng(seed)
    verdicts = np.where(rng.random(n) < p_a, "a", "b")
    len_b = rng.integers(200, 600, n)
    len_a = len_b if lengths == "equal" else rng.integers(200, 600, n)  # independent of the verdict
    return [row(f"p{i}", str(v), a, b) for i, (v, a, b) in enumerate(zip(verdicts, len_a, len_b))]


# --- (1) a judge that prefers the longer answer only -------------------------------------------------------

# Tolerance: over 20 seeds at 400 prompts the LC win rate of this set had mean 0.494 and sd 0.036, so at 1,000
# prompts its sd is about 0.036 * sqrt(400 / 1000) = 0.023; 0.075 is ~3 sd. The raw win rate is ~0.74, so an
# uncorrected rate (or a prediction at the mean length gap instead of at zero) misses by ~0.24 and fails.
LC_TOLERANCE = 0.075


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_length_only_judge_raw_is_far_from_half_but_lc_is_not(seed):
    result = length_controlled_win_rate(length_judge(seed, 1000), n_boot=0)
    assert result["raw_win_rate"] > 0.70
    assert abs(result["lc_win_rate"] - 0.5) < LC_TOLERANCE
    assert result["prompt_term"] == "none" and result["n"] == result["n_prompts"] == 1000


def test_length_only_judge_with_samples_fits_prompt_offsets_and_stays_near_half():
    result = length_controlled_win_rate(length_judge(0, 300, samples=3), n_boot=0)
    assert result["prompt_term"] == "ridge" and (result["n"], result["n_prompts"]) == (900, 300)
    assert result["raw_win_rate"] > 0.70
    assert abs(result["lc_win_rate"] - 0.5) < LC_TOLERANCE


def test_bootstrap_ci_covers_half_and_excludes_the_raw_rate():
    result = length_controlled_win_rate(length_judge(0, 400), n_boot=60, seed=3)
    low, high = result["lc_ci"]
    assert low <= result["lc_win_rate"] <= high
    assert low <= 0.5 <= high
    assert high < result["raw_win_rate"]
    assert 0.02 < high - low < 0.3
    again = length_controlled_win_rate(length_judge(0, 400), n_boot=60, seed=3)
    assert again["lc_ci"] == result["lc_ci"]  # seeded


# --- (2) model a truly better, lengths equal or unrelated to the verdict -----------------------------------

def test_equal_lengths_lc_equals_raw():
    result = length_controlled_win_rate(better_judge(0, 400), n_boot=0)
    assert result["raw_win_rate"] == pytest.approx(0.8, abs=0.05)
    # With every length difference 0 the length feature is 0 and the intercept-only logistic fit reproduces
    # the mean target (up to the tiny ridge that keeps it finite).
    assert result["lc_win_rate"] == pytest.approx(result["raw_win_rate"], abs=1e-3)
    assert result["length_coef"] == 0.0


def test_lengths_unrelated_to_the_verdict_leave_lc_near_raw():
    result = length_controlled_win_rate(better_judge(1, 1000, lengths="random"), n_boot=0)
    assert abs(result["length_coef"]) < 0.3
    assert result["lc_win_rate"] == pytest.approx(result["raw_win_rate"], abs=0.03)
    assert result["lc_win_rate"] > 0.75


# --- (3) the sign of the length coefficient ---------------------------------------------------------------

def test_length_coef_is_positive_when_the_judge_prefers_longer_and_negative_for_shorter():
    longer = length_controlled_win_rate(length_judge(0, 600), n_boot=0)
    shorter = length_controlled_win_rate(length_judge(0, 600, prefer="shorter"), n_boot=0)
    assert longer["length_coef"] > 1.0
    assert shorter["length_coef"] < -1.0
    assert shorter["raw_win_rate"] < 0.30  # a is longer, so a shorter-loving judge sinks it
    assert abs(shorter["lc_win_rate"] - 0.5) < LC_TOLERANCE


# --- (4) edge cases checkable by hand ----------------------------------------------------------------------

def test_all_ties_give_one_half():
    rows = [row(f"p{i}", "tie", 100 + 50 * i, 300) for i in range(6)]
    result = length_controlled_win_rate(rows, n_boot=20)
    assert result["raw_win_rate"] == 0.5
    assert result["lc_win_rate"] == pytest.approx(0.5, abs=1e-6)
    assert result["length_coef"] == pytest.approx(0.0, abs=1e-6)
    assert result["lc_ci"] == pytest.approx([0.5, 0.5], abs=1e-6)


def test_three_of_four_wins_at_equal_length():
    # raw = (1 + 1 + 1 + 0) / 4 = 0.75; the fit is sigmoid(theta) = 0.75, theta = ln 3 = 1.0986
    rows = [row(f"p{i}", v, 200, 200) for i, v in enumerate("aaab")]
    result = length_controlled_win_rate(rows, n_boot=0)
    assert result["raw_win_rate"] == 0.75
    assert result["lc_win_rate"] == pytest.approx(0.75, abs=2e-3)
    assert result["intercept"] == pytest.approx(math.log(3), abs=0.01)
    assert result["lc_ci"] is None and result["length_scale"] == 0.0


def test_missing_rows_are_excluded_and_counted():
    rows = [row("p0", "a", 10, 10), row("p1", "b", 10, 10), row("p2", "tie", 10, 10),
            row("p3", None, 10, 10),  # the judge failed: missing=True
            {**row("p4", None, 10, 10), "missing": False},  # no verdict, no preference
            {**row("p5", "a", 10, 10), "missing": True}]  # flagged missing wins over a stale verdict
    result = length_controlled_win_rate(rows, n_boot=0)
    assert (result["n"], result["missing"], result["n_prompts"]) == (3, 3, 3)
    assert result["raw_win_rate"] == pytest.approx((1 + 0 + 0.5) / 3)


def test_soft_preference_wins_over_the_hard_verdict():
    rows = [row(f"p{i}", "tie", 50, 50, soft_preference=0.9) for i in range(4)]
    rows.append(row("p4", "a", 50, 50, soft_preference=None))  # None: fall back to the verdict (1.0)
    result = length_controlled_win_rate(rows, n_boot=0)
    assert result["raw_win_rate"] == pytest.approx((4 * 0.9 + 1.0) / 5)
    assert result["lc_win_rate"] == pytest.approx(result["raw_win_rate"], abs=2e-3)


def test_bootstrap_resamples_whole_prompts():
    # Each prompt has one win and one loss: every resample of PROMPTS is exactly 0.5, while a resample of
    # single rows would draw unbalanced sets and give an interval of positive width.
    rows = [row(f"p{i}", v, 100, 100, sample=s) for i in range(30) for s, v in enumerate("ab")]
    result = length_controlled_win_rate(rows, n_boot=50)
    assert result["prompt_term"] == "ridge"
    assert result["lc_win_rate"] == pytest.approx(0.5, abs=1e-6)
    assert result["lc_ci"] == pytest.approx([0.5, 0.5], abs=1e-6)


def test_no_scored_rows_and_lengths_from_answers():
    empty = length_controlled_win_rate([row("p0", None, 1, 1)], n_boot=10)
    assert (empty["n"], empty["missing"], empty["lc_win_rate"], empty["lc_ci"]) == (0, 1, None, None)
    # without "lengths" the answer texts are measured: a 30-char vs 10-char answer
    rows = [{"id": f"p{i}", "models": {"a": "x", "b": "y"}, "verdict": v,
             "answers": {"a": "x" * (10 + 20 * (i % 2)), "b": "y" * 10}} for i, v in enumerate("abab")]
    scale = length_controlled_win_rate(rows, n_boot=0)["length_scale"]
    assert scale == pytest.approx(np.std([0, 20] * 2, ddof=1))


def test_one_fit_per_model_pair():
    rows = better_judge(0, 50) + [{**r, "models": {"a": "lima", "b": "gpt4"}, "verdict": "b"}
                                  for r in better_judge(1, 40)]
    with pytest.raises(ValueError, match="2 model pairs"):
        length_controlled_win_rate(rows)
    first, second = length_controlled_by_pair(rows, n_boot=0)
    assert (first["models"], first["n"]) == ({"a": "lima", "b": "base"}, 50)
    assert (second["models"], second["n"], second["raw_win_rate"]) == ({"a": "lima", "b": "gpt4"}, 40, 0.0)
