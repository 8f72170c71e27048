"""The built-in local judge: its own chat template (no token added), judge decoding (no repetition penalty,
greedy or seeded sampling), a seed per call from the cache key, and weighted replies on a real small model."""

import asyncio
import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lima_align.chat_format import ChatFormat, install_chat_template
from lima_align.errors import LimaError
from lima_align.evaluate.cache import NoCache, cache_key
from lima_align.evaluate.clients import CachedJudge, CallParams, call_seed
from lima_align.evaluate.local import LocalJudge, fold_system
from lima_align.evaluate.parsers import choice_probs
from lima_align.evaluate.templates import load_template
from lima_align.generate.decoding import apply_repetition_penalty
from lima_align.models import load_tokenizer

JUDGE = "smollm2-135m-instruct"
MESSAGES = [{"role": "system", "content": "You are a strict judge."}, {"role": "user", "content": "Is 2+2=4?"}]


@pytest.fixture(scope="module")
def fresh_tokenizer():
    return load_tokenizer(JUDGE)


@pytest.fixture(scope="module")
def smol():
    return LocalJudge.load(JUDGE, device="cpu")


@pytest.fixture(scope="module")
def tiny(fresh_tokenizer):
    """A random 2-layer Llama with smollm2's own tokenizer (nothing added): fast, real template and vocab."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fresh_tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512)
    return LocalJudge(LlamaForCausalLM(config), copy.deepcopy(fresh_tokenizer), "tiny")


def template_ids(tokenizer, messages):
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"])


def test_prompt_is_the_models_own_chat_template_and_no_token_is_added(smol, fresh_tokenizer):
    assert smol.prompt_ids(MESSAGES) == template_ids(fresh_tokenizer, MESSAGES)
    assert smol.tokenizer.get_vocab() == fresh_tokenizer.get_vocab() and "<|eot|>" not in smol.tokenizer.get_vocab()
    assert smol.lm.get_input_embeddings().weight.shape[0] == smol.lm.config.vocab_size == len(fresh_tokenizer)
    text = fresh_tokenizer.decode(smol.prompt_ids(MESSAGES))
    assert text.startswith("<|im_start|>system\nYou are a strict judge.<|im_end|>")  # the system turn kept
    assert text.endswith("<|im_start|>assistant\n")
    assert smol.stop_ids == {fresh_tokenizer.convert_tokens_to_ids("<|im_end|>")}


def test_every_call_is_rendered_with_the_template(tiny, fresh_tokenizer, monkeypatch):
    seen = []
    decode = tiny.decode
    monkeypatch.setattr(tiny, "decode", lambda ids, *rest: seen.append(ids) or decode(ids, *rest))
    asyncio.run(tiny.complete(MESSAGES, CallParams(max_tokens=2)))
    assert seen == [template_ids(fresh_tokenizer, MESSAGES)]
    assert len(tiny.tokenizer) == len(fresh_tokenizer)


def test_a_template_without_a_system_role_gets_it_folded_into_the_user_turn(fresh_tokenizer):
    tok = copy.deepcopy(fresh_tokenizer)
    install_chat_template(tok, ChatFormat())  # a lima-align checkpoint's template: user / assistant only
    judge = LocalJudge(LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=8, intermediate_size=8,
                                                    num_hidden_layers=1, num_attention_heads=1)), tok, "lima")
    folded = fold_system(MESSAGES)
    assert folded == [{"role": "user", "content": "You are a strict judge.\n\nIs 2+2=4?"}]
    assert judge.prompt_ids(MESSAGES) == template_ids(tok, folded)


def test_a_base_model_without_a_chat_template_is_refused(tiny, fresh_tokenizer):
    tok = copy.deepcopy(fresh_tokenizer)
    tok.chat_template = None
    with pytest.raises(LimaError, match="no chat template"):
        LocalJudge(tiny.lm, tok, "base")
    with pytest.raises(LimaError, match="base model"):  # the built-in base model, refused before its weights load
        LocalJudge.load("gemma-3-270m", device="cpu")


def _greedy(lm, ids, n, penalty=1.0):
    """The reference: plain argmax decoding by full forward passes, optionally with LIMA's penalty."""
    seq, out = list(ids), []
    with torch.inference_mode():
        for _ in range(n):
            logits = lm(torch.tensor([seq])).logits[:, -1].float()
            seen = torch.zeros_like(logits, dtype=torch.bool)
            seen[0, out] = True
            out.append(int(apply_repetition_penalty(logits, seen, penalty).argmax()))
            seq.append(out[-1])
    return out


REPEAT = [{"role": "user", "content": "Repeat after me: yes yes yes yes yes yes"}]


def test_judge_decoding_has_no_repetition_penalty(smol):
    """A reply that repeats itself on purpose (as the Likert protocol asks) is what a penalty would change."""
    ids = smol.prompt_ids(REPEAT)
    plain = _greedy(smol.lm, ids, 10)
    stop = next(i for i, tok in enumerate(plain) if tok in smol.stop_ids)
    plain = plain[:stop + 1]  # "Yes yes yes yes yes yes<|im_end|>"
    penalised = _greedy(smol.lm, ids, len(plain), penalty=1.2)  # "Yes yes no yes ..."
    assert penalised != plain  # the check below can tell the two apart on this model and prompt
    assert smol.decode(ids, 10, 0.0, seed=1) == plain
    reply = asyncio.run(smol.complete(REPEAT, CallParams(temperature=0.0, max_tokens=10)))
    assert reply.text == smol.tokenizer.decode(plain[:-1]) and reply.text.lower().count("yes") == 6
    assert reply.completion_tokens == len(plain)


def test_each_call_gets_its_own_seed_and_a_repeated_call_the_same(tiny):
    judge = CachedJudge(tiny, NoCache())
    sampled = CallParams(temperature=1.0, max_tokens=8)

    def call(content, params=sampled):
        return asyncio.run(judge.complete([{"role": "user", "content": content}], params, "v1"))

    first, again, other = call("Rate this."), call("Rate this."), call("Rate that.")
    second_sample = call("Rate this.", CallParams(temperature=1.0, max_tokens=8, sample=1))
    assert first.key == cache_key("tiny@chat-template", "v1", [{"role": "user", "content": "Rate this."}],
                                  sampled.to_dict())  # not the key of the earlier, LIMA-templated judge
    assert first.seed == call_seed(first.key) and first.seed == again.seed and first.text == again.text
    assert len({first.seed, other.seed, second_sample.seed}) == 3
    assert first.text != second_sample.text  # the seed really drives the sampler
    seeds = {call_seed(cache_key("tiny", "v1", [{"role": "user", "content": str(i)}], sampled.to_dict()))
             for i in range(500)}
    assert len(seeds) == 500 and call_seed("k", 7) != call_seed("k")  # a configured seed shifts them all


def test_weighted_reply_on_a_real_model_gives_verdict_probabilities(smol):
    prompt = load_template("pairwise-weighted").render(question="What is the capital of France?",
                                                       answer_a="Paris.", answer_b="I don't know.")
    messages = [{"role": "user", "content": prompt}]
    params = CallParams(max_tokens=1, top_logprobs=5, candidates=("A", "B", "C"))
    reply = asyncio.run(smol.complete(messages, params))
    direct = smol.next_token_logprobs(template_ids(smol.tokenizer, messages))
    assert reply.error is None and reply.completion_tokens == 1
    top5 = {smol.tokenizer.decode([i]) for i in direct.topk(5).indices.tolist()}
    spellings = {t for t in reply.logprobs if t.strip() in ("A", "B", "C")}
    assert top5 <= set(reply.logprobs) and {"A", " A", "B", " B", "C", " C"} <= spellings
    a = smol.tokenizer.convert_tokens_to_ids("A")
    assert reply.logprobs["A"] == pytest.approx(float(direct[a]), abs=1e-5)
    probs = choice_probs(reply.logprobs, {"A": "A", "B": "B", "tie": "C"})
    assert sum(probs.values()) == pytest.approx(1.0) and all(0 < p < 1 for p in probs.values())
