import pytest
import torch
from transformers import RepetitionPenaltyLogitsProcessor

from lima_align.generate.decoding import (GeneratedTokensRepetitionPenalty, SamplingConfig,
                                          apply_repetition_penalty, nucleus_filter, row_seed)


def test_paper_defaults():
    c = SamplingConfig()
    assert (c.temperature, c.top_p, c.repetition_penalty, c.penalty_scope, c.max_new_tokens) == \
        (0.7, 0.9, 1.2, "generated", 2048)


@pytest.mark.parametrize("kwargs", [{"temperature": -1}, {"top_p": 0}, {"top_p": 1.5},
                                    {"repetition_penalty": 0}, {"penalty_scope": "prompt"},
                                    {"max_new_tokens": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        SamplingConfig(**kwargs)


def test_generated_only_penalty_spares_prompt_tokens_that_hf_penalises():
    # vocab of 6; the prompt is [1, 2, 3] (width 3), the model has generated [4] so far
    input_ids = torch.tensor([[1, 2, 3, 4]])
    scores = torch.tensor([[1.0, 2.0, -2.0, 3.0, 4.0, 0.5]])
    ours = GeneratedTokensRepetitionPenalty(1.2, prompt_length=3)(input_ids, scores.clone())
    hf = RepetitionPenaltyLogitsProcessor(1.2)(input_ids, scores.clone())
    # the prompt tokens 1, 2, 3 keep their scores with the paper's penalty...
    assert torch.equal(ours[0, 1:4], scores[0, 1:4])
    # ...while transformers' built-in penalises them (2.0 / 1.2, -2.0 * 1.2, 3.0 / 1.2)
    assert torch.allclose(hf[0, 1:4], torch.tensor([2.0 / 1.2, -2.4, 3.0 / 1.2]))
    # both penalise the generated token the same way; untouched tokens stay
    assert ours[0, 4] == hf[0, 4] == pytest.approx(4.0 / 1.2)
    assert ours[0, 0] == hf[0, 0] == 1.0 and ours[0, 5] == hf[0, 5] == 0.5


def test_scope_all_equals_transformers():
    input_ids = torch.tensor([[0, 3, 3, 5], [2, 2, 1, 4]])
    scores = torch.randn(2, 7)
    seen = torch.zeros(2, 7, dtype=torch.bool).scatter(1, input_ids, True)
    hf = RepetitionPenaltyLogitsProcessor(1.3)(input_ids, scores.clone())
    assert torch.allclose(apply_repetition_penalty(scores, seen, 1.3), hf)


def test_nucleus_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(nucleus_filter(logits, 0.75))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(nucleus_filter(logits, 0.9)).tolist() == [[True, True, True, False]]
    assert torch.isfinite(nucleus_filter(logits, 0.1)).sum() == 1  # never empty
    assert torch.equal(nucleus_filter(logits, 1.0), logits)


def test_row_seed_is_stable_and_distinct():
    assert row_seed(0, "a", 0) == row_seed(0, "a", 0)
    assert len({row_seed(0, "a", 0), row_seed(0, "a", 1), row_seed(1, "a", 0), row_seed(0, "b", 0)}) == 4


@pytest.mark.parametrize("top_p", [5e-324, 1e-45, 1e-12])
def test_a_vanishing_top_p_samples_the_most_likely_token(top_p):
    """Found by the schemathesis run of the server: top_p=5e-324 is 0 in float32, the nucleus was empty and the
    multinomial draw raised (a 500)."""
    from lima_align.generate.decoding import next_tokens

    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]))
    seen = torch.zeros(2, 3, dtype=torch.bool)
    config = SamplingConfig(temperature=1.0, top_p=top_p, repetition_penalty=1.0)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    assert next_tokens(logits, seen, config, gens).tolist() == [1, 0]
    assert torch.isfinite(nucleus_filter(logits, top_p)).tolist() == [[False, True, False], [True, False, False]]


@pytest.mark.parametrize("temperature", [5e-324, 1e-300, 9e-6])
def test_a_vanishing_temperature_is_greedy(temperature):
    """Found by the schemathesis run: logits / 5e-324 are inf, the probabilities NaN, and the draw raised."""
    from lima_align.generate.decoding import next_tokens

    logits = torch.tensor([[0.1, 2.0, 1.9], [3.0, -1.0, 2.99]])
    config = SamplingConfig(temperature=temperature, top_p=0.9, repetition_penalty=1.0)
    assert config.greedy
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    assert next_tokens(logits, torch.zeros(2, 3, dtype=torch.bool), config, gens).tolist() == [1, 0]
    assert not SamplingConfig(temperature=1e-4).greedy
