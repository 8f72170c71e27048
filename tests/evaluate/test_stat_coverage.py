"""Simulations where the truth is known: the 95% intervals cover it about 95% of the time when the samples of a
prompt are correlated (a per-prompt random effect), at 5, 20 and 300 prompts x 5 samples.

Each study draws a per-prompt true rate (or Likert quality) from a Beta distribution whose mean is the known
truth, then 5 samples per prompt around it. The interval code is vectorised over studies (``rate_cis`` and
``t_interval`` take a leading axis), so 2,000 studies (4,000 for the cheap Likert case) run in seconds; the
functions the summaries call are checked to give the same intervals as these vectorised paths. With 2,000 studies
a coverage estimate has a standard error of about 0.5 points, so 93-97% is a +-4 SE band around 95%.
"""

import numpy as np
import pytest

from lima_align.evaluate.intervals import MIN_BOOTSTRAP_PROMPTS, rate_cis, t_interval
from lima_align.evaluate.statistics import likert_summary, win_tie_loss

SAMPLES = 5  # per prompt, as in the paper's ablations


def _rate_studies(rng, n_prompts, rate, concentration, studies=2000):
    """Per-prompt win counts (studies, prompts): prompt rates ~ Beta(rate*c, (1-rate)*c), mean ``rate`` and
    intra-prompt correlation 1 / (c + 1); then SAMPLES Bernoulli draws per prompt."""
    p_prompt = rng.beta(rate * concentration, (1 - rate) * concentration, size=(studies, n_prompts))
    return p_prompt, rng.binomial(SAMPLES, p_prompt).astype(float)


def _covers(lo, hi, truth):
    return float(np.mean((lo <= truth) & (truth <= hi)))


@pytest.mark.parametrize("n_prompts", [5, 20, 300])
def test_rate_interval_covers_a_clustered_true_rate(n_prompts):
    # true win rate 0.5, intra-prompt correlation 0.4 (c = 1.5): 5 samples of a prompt are far from independent
    rng = np.random.default_rng(1000 + n_prompts)
    _, sums = _rate_studies(rng, n_prompts, 0.5, 1.5)
    r = rate_cis(sums, np.full(n_prompts, float(SAMPLES)))
    coverage = _covers(r["lo"], r["hi"], 0.5)
    assert 0.93 <= coverage <= 0.97, coverage
    assert np.all(r["hi"] > r["lo"])  # never a zero-width interval
    # the regime each size exercises: Wilson at the effective n below 30 prompts, the cluster bootstrap above
    assert r["bootstrap"].mean() == (1.0 if n_prompts >= MIN_BOOTSTRAP_PROMPTS else 0.0)


def test_rate_interval_at_a_low_rate_is_never_anticonservative():
    # true rate 0.2, correlation 0.25: at 5 prompts the discrete Wilson is conservative (about 99%), not narrow
    measured = {}
    for n_prompts in (5, 20, 300):
        _, sums = _rate_studies(np.random.default_rng(2000 + n_prompts), n_prompts, 0.2, 3.0)
        r = rate_cis(sums, np.full(n_prompts, float(SAMPLES)))
        measured[n_prompts] = _covers(r["lo"], r["hi"], 0.2)
    assert measured[5] >= 0.93 and all(0.93 <= measured[n] <= 0.97 for n in (20, 300)), measured


@pytest.mark.parametrize("n_prompts", [20, 300])
def test_ignoring_the_prompt_clustering_under_covers(n_prompts):
    # the same studies with every sample treated as its own prompt (what the old per-row bootstrap did)
    rng = np.random.default_rng(3000 + n_prompts)
    p_prompt, _ = _rate_studies(rng, n_prompts, 0.5, 1.5)
    wins = (rng.random((*p_prompt.shape, SAMPLES)) < p_prompt[..., None]).astype(float)
    clustered = rate_cis(wins.sum(-1), np.full(n_prompts, float(SAMPLES)))
    independent = rate_cis(wins.reshape(len(wins), -1), np.ones(n_prompts * SAMPLES))
    assert _covers(independent["lo"], independent["hi"], 0.5) < 0.88
    assert 0.93 <= _covers(clustered["lo"], clustered["hi"], 0.5) <= 0.97


def test_win_tie_loss_gives_the_vectorised_interval():
    # the summaries' path (rows with prompt ids) and the simulation's path (per-prompt totals) agree
    rng = np.random.default_rng(5)
    _, sums = _rate_studies(rng, 40, 0.4, 2.0, studies=1)
    verdicts, prompts = [], []
    for i, wins in enumerate(sums[0].astype(int)):
        verdicts += ["a"] * wins + ["b"] * (SAMPLES - wins)
        prompts += [f"q{i}"] * SAMPLES
    r = win_tie_loss(verdicts, prompts)
    v = rate_cis(sums[0], np.full(40, float(SAMPLES)))
    assert r["win_ci"] == pytest.approx([float(v["lo"]), float(v["hi"])])
    assert r["win_ci_method"] == "cluster-bootstrap" and r["design"] == "40 prompts x 5 samples"


def _likert_studies(rng, n_prompts, studies=4000, a=4.0, b=3.0):
    """Scores 1 + Binomial(5, q) with a per-prompt quality q ~ Beta(a, b): truth 1 + 5 a / (a + b) = 3.857; the
    scores of one prompt correlate at 0.42 (design effect 2.7 for 5 samples)."""
    q = rng.beta(a, b, size=(studies, n_prompts, 1))
    return 1 + rng.binomial(5, np.broadcast_to(q, (studies, n_prompts, SAMPLES))).astype(float), 1 + 5 * a / (a + b)


@pytest.mark.parametrize("n_prompts", [5, 20, 300])
def test_likert_ci_over_prompts_covers_and_the_independent_one_does_not(n_prompts):
    scores, truth = _likert_studies(np.random.default_rng(4000 + n_prompts), n_prompts)
    new = _covers(*t_interval(scores.mean(-1)), truth)  # t over the per-prompt means (k - 1 df)
    old = _covers(*t_interval(scores.reshape(len(scores), -1)), truth)  # the old: t over all 5k samples
    assert 0.93 <= new <= 0.97, new
    assert old < 0.85, old


def test_likert_summary_is_the_t_interval_over_prompt_means():
    scores, _ = _likert_studies(np.random.default_rng(9), 12, studies=1)
    flat = scores[0].ravel().tolist()
    prompts = [f"q{i}" for i in range(12) for _ in range(SAMPLES)]
    s = likert_summary(flat, prompts)
    lo, hi = t_interval(scores[0].mean(-1))
    assert s["ci"] == pytest.approx([float(lo), float(hi)])
    assert s["ci"] != pytest.approx(likert_summary(flat)["ci"])  # not the per-sample interval
