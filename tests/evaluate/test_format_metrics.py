"""Judge-free format metrics: hand-built answers whose every value is known, then real outputs files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lima_align.evaluate.format_metrics import (Intervals, answer_from_row, continuation, distinct_n,
                                                has_bullets, has_code, has_heading, has_list, has_numbered,
                                                has_paragraphs, has_repetition, is_refusal, metrics_by_model,
                                                metrics_for_files, model_metrics, rate, read_output_rows,
                                                render_table)

# Wilson 95% (z = 1.959964, z^2 = 3.841459) by hand, centre = (p + z^2/2n) / (1 + z^2/n),
# half = z * sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n):
# 3 of 4: centre = (0.75 + 0.480182) / 1.960365 = 0.627524, half = 1.959964 * sqrt(0.046875 + 0.060023)
#         / 1.960365 = 0.326887 -> [0.3006, 0.9544]
WILSON_3_OF_4 = [0.3006, 0.9544]
# 2 of 4: centre 0.5, half = 1.959964 * sqrt(0.0625 + 0.060023) / 1.960365 = 0.349976 -> [0.1500, 0.8500]
WILSON_2_OF_4 = [0.1500, 0.8500]
# 0 of 3: low 0, high = (z^2/2n + z * sqrt(z^2/4n^2)) / (1 + z^2/n) = z^2 / (n + z^2) = 0.5615
WILSON_0_OF_3 = [0.0, 0.5615]


def out_row(pid, text, *, finish="eot", tokens=10, generator="lima", sample=0, prompt="Question?",
            safety=None):
    """A ``lima-align generate`` output row."""
    return {"id": pid, "sample": sample, "conversations": [prompt] + ([text] if text.strip() else []),
            "output": text, "finish_reason": finish, "prompt_tokens": 5, "completion_tokens": tokens,
            "generator": generator, "sampling": {}, "seed": 0, "meta": {"safety": safety} if safety else {}}


# --- stop rate ------------------------------------------------------------------------------------------

def test_stop_rate_three_of_four_with_its_wilson_interval_and_failed_rows_excluded():
    rows = [out_row("q0", "A.", finish="eot"), out_row("q1", "B.", finish="eos"),
            out_row("q2", "C", finish="length"), out_row("q3", "D.", finish="stop"),
            out_row("q4", "", finish="error")]
    m = model_metrics(rows)
    assert (m["answers"], m["prompts"], m["excluded"]) == (4, 4, {"error": 1})
    stop = m["stop_rate"]
    assert (stop["k"], stop["n"], stop["rate"], stop["interval"]) == (3, 4, 0.75, "wilson")
    assert stop["ci"] == pytest.approx(WILSON_3_OF_4, abs=1e-4)
    eot = m["eot_rate"]  # EOT itself: the EOS and the API stop do not count
    assert (eot["k"], eot["n"], eot["rate"]) == (1, 4, 0.25)


def test_stop_rate_is_none_without_finish_reasons():
    rows = [{"instruction": "Hi there, who are you?", "output": "I am a model.", "generator": "g"}]
    m = model_metrics(rows)
    assert m["stop_rate"] is None and m["tokens"] is None
    assert m["chars"]["mean"] == len("I am a model.")


def test_samples_of_one_prompt_use_the_cluster_bootstrap():
    # Every prompt has one stopped and one capped sample: any draw of PROMPTS gives exactly 0.5, while Wilson
    # on 4 answers (treating samples as independent) would say [0.15, 0.85].
    rows = [out_row(p, "x.", finish=f, sample=s) for p in ("q0", "q1")
            for s, f in enumerate(("eot", "length"))]
    stop = model_metrics(rows)["stop_rate"]
    assert (stop["rate"], stop["interval"]) == (0.5, "cluster_bootstrap")
    assert stop["ci"] == [0.5, 0.5]
    # one prompt always stops, the other never: draws give 0, 0.5 or 1, so the 95% interval is [0, 1]
    rows = [out_row(p, "x.", finish=f, sample=s) for p, f in (("q0", "eot"), ("q1", "length"))
            for s in (0, 1)]
    assert model_metrics(rows, Intervals(n_boot=2000, seed=1))["stop_rate"]["ci"] == [0.0, 1.0]


def test_rate_helper_hand_values():
    assert rate([], []) is None
    zero = rate([False] * 3, ["a", "b", "c"])
    assert (zero["rate"], zero["interval"]) == (0.0, "wilson")
    assert zero["ci"] == pytest.approx(WILSON_0_OF_3, abs=1e-4)


# --- continuation ----------------------------------------------------------------------------------------

ECHO_PROMPT = "Write a short poem about the sea and the sky at night."


@pytest.mark.parametrize("text, prompt, reason", [
    ("the capital of France, as everyone knows, is Paris.", "Tell me about France", "mid_sentence"),
    (", and then the story goes on.", "Once upon a time", "mid_sentence"),
    ("And then she left the room.", "Continue the story.", "mid_sentence"),
    ("... which is why it matters.", "Why?", "mid_sentence"),
    (". Then the sun rose.", "Go on", "mid_sentence"),
    (ECHO_PROMPT + " The waves are dark.", ECHO_PROMPT, "echo"),
    ("  write a SHORT poem about   the sea and the sky!", ECHO_PROMPT, "echo"),  # 40-char prefix, case/space
    ("What should I call you?", "what should i call you?", "echo"),  # a 23-char prompt echoed whole
])
def test_continuations_are_flagged_with_their_reason(text, prompt, reason):
    assert continuation(text, prompt) == reason


@pytest.mark.parametrize("text, prompt", [
    ("Paris is the capital of France.", "What is the capital of France?"),
    ("1. Boil water.\n2. Add the egg.", "How do I boil an egg?"),
    ("- first\n- second", "List two things."),
    ("```python\nprint(1)\n```", "Print one in Python."),
    ("blue", "What color is the sky"),  # a lowercase one-word reply answers
    ("def f(x):\n    return x", "Write f."),  # a lowercase line of code answers
    (".5 is one half.", "What is 1/2 as a decimal?"),  # a full stop starting a number
    ("He goes to school every day.", "Fix the grammar: he go to school every days."),  # not its opening
    ("Say hi. Hello!", "Say hi."),  # prompts under 20 characters are never called echoed
    ("Write a short poem, please? No: here is one.", ECHO_PROMPT),  # shares only 'write a short poem'
    ("", ECHO_PROMPT),
])
def test_answers_are_not_flagged(text, prompt):
    assert continuation(text, prompt) is None


def test_continuation_rate_counts_reasons():
    rows = [out_row("q0", "the answer continues the prompt here.", prompt="Tell me"),
            out_row("q1", ECHO_PROMPT, prompt=ECHO_PROMPT),
            out_row("q2", "Sure, here it is.", prompt=ECHO_PROMPT), out_row("q3", "Yes.", prompt="Is it?")]
    c = model_metrics(rows)["continuation_rate"]
    assert (c["k"], c["n"], c["rate"], c["reasons"]) == (2, 4, 0.5, {"echo": 1, "mid_sentence": 1})
    assert c["ci"] == pytest.approx(WILSON_2_OF_4, abs=1e-4)


# --- format markers, diversity, repetition ----------------------------------------------------------------

def test_format_predicates_both_ways():
    assert has_bullets("Tips:\n- one\n* two") and not has_bullets("- only one item")
    assert has_numbered("1. a\n2) b") and not has_numbered("In 2020. We went.\nThen 3 more")
    assert has_list("- one\n1. two") and not has_list("- one") and not has_list("---\nplain")
    assert has_heading("# Title\ntext") and has_heading("Ingredients:\n- egg")
    assert not has_heading("Conclusion:")  # nothing under it
    assert not has_heading("This is a long sentence that introduces the next list:\n- a")  # > 6 words
    assert not has_heading("#hashtag is not a heading")
    assert has_code("Run:\n```bash\nls\n```") and not has_code("use `ls` inline")
    assert has_paragraphs("One.\n\nTwo.") and not has_paragraphs("One.\nTwo.\n\n   \n")


def test_marker_rates_on_four_answers():
    answers = ["Steps:\n1. a\n2. b", "## Plan\n\n- x\n- y", "Plain answer.", "Code:\n```\nx\n```"]
    m = model_metrics([out_row(f"q{i}", t) for i, t in enumerate(answers)])
    got = {k: m[k]["k"] for k in ("list_rate", "bulleted_rate", "numbered_rate", "heading_rate", "code_rate",
                                  "paragraphs_rate")}
    assert got == {"list_rate": 2, "bulleted_rate": 1, "numbered_rate": 1, "heading_rate": 3, "code_rate": 1,
                   "paragraphs_rate": 1}
    assert m["list_rate"]["rate"] == 0.5 and m["list_rate"]["ci"] == pytest.approx(WILSON_2_OF_4, abs=1e-4)


def test_distinct_2_never_crosses_answers():
    # each "a b" has one bigram (a, b): 1 unique of 2. Joined, "a b a b" would give 2 unique of 3.
    assert distinct_n(["a b", "A, b!"]) == 0.5
    assert distinct_n(["one two three four"]) == 1.0
    assert distinct_n(["single", ""]) is None


def test_repetition_needs_a_4gram_three_times():
    assert has_repetition("the cat sat down " * 3)  # 'the cat sat down' at words 0, 4 and 8
    assert not has_repetition("the cat sat down " * 2)
    assert not has_repetition("a b c d e f g h i j k l")
    m = model_metrics([out_row("q0", "so so so so so so"), out_row("q1", "Fine.")])
    assert (m["repetition_rate"]["k"], m["distinct_2"]) == (1, 1 / 5)


def test_length_distribution():
    sizes = [(1, 10), (2, 20), (3, 30), (4, 40)]  # (characters, tokens)
    rows = [out_row(f"q{i}", "x" * c, tokens=t) for i, (c, t) in enumerate(sizes)]
    m = model_metrics(rows)
    # p90 by linear interpolation: position 0.9 * 3 = 2.7 -> 30 + 0.7 * (40 - 30) = 37
    assert m["tokens"] == {"mean": 25.0, "median": 25.0, "p90": 37.0, "n": 4}
    assert m["chars"] == {"mean": 2.5, "median": 2.5, "p90": 3.7, "n": 4}


# --- refusals ---------------------------------------------------------------------------------------------

def test_refusal_rate_on_safety_tagged_prompts_only():
    rows = [out_row("s0", "I’m sorry, but I can’t help with that.", safety="sensitive"),  # curly quotes
            out_row("s1", "Sure! Here is how to do it safely.", safety="sensitive"),
            out_row("s2", "As an AI, I will not do that.", safety="refusal"),
            out_row("q0", "I cannot answer that.")]  # untagged: not counted
    m = model_metrics(rows)
    r = m["refusal_rate"]
    assert (m["safety_tagged"], r["k"], r["n"]) == (3, 2, 3)
    assert r["rate"] == pytest.approx(2 / 3)
    assert model_metrics(rows[3:])["refusal_rate"] is None


def test_refusal_phrase_must_open_the_answer():
    assert is_refusal("I cannot do that.") and not is_refusal("Here is a recipe.")
    assert not is_refusal("Step one. " * 40 + "I cannot stress this enough.")  # past the first 300 characters


# --- several models, files, table -----------------------------------------------------------------------

def test_models_are_split_and_the_table_renders():
    finishes = ["eot"] * 3 + ["length"]
    rows = [out_row(f"q{i}", "A.", finish=f, generator="lima") for i, f in enumerate(finishes)]
    rows += [out_row("q0", "B.", generator="base", safety="sensitive")]
    with pytest.raises(ValueError, match="2 models"):
        model_metrics(rows)
    lima, base = metrics_by_model(rows)
    assert (lima["model"], lima["answers"], base["model"], base["answers"]) == ("lima", 4, "base", 1)
    table = render_table([lima, base]).splitlines()
    assert table[0].startswith("| model | answers | stop |") and len(table) == 4
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert cells[:3] == ["lima", "4", "75.0 (30-95)"]
    assert cells[table[0].strip("|").split("|").index(" refusals ")] == "-"
    json.dumps([lima, base])  # JSON-able


def test_alpaca_eval_outputs_read_as_outputs(shared_data):
    path = shared_data / "eval" / "alpaca_eval" / "text_davinci_003_model_outputs.json"
    raw = json.loads(path.read_text())
    (m,) = metrics_for_files([path])
    assert (m["file"], m["model"], m["answers"]) == (str(path), "text_davinci_003", len(raw))
    assert m["prompts"] == len({r["instruction"] for r in raw})  # no ids: the instruction names the prompt
    assert m["stop_rate"] is None and m["tokens"] is None and m["refusal_rate"] is None
    assert m["chars"]["mean"] == pytest.approx(np.mean([len(r["output"]) for r in raw]))
    # an instruction-tuned model answers: it rarely continues the prompt, and it formats some answers
    assert m["continuation_rate"]["rate"] < 0.05
    assert 0.05 < m["list_rate"]["rate"] < 0.5 and 0.1 < m["paragraphs_rate"]["rate"] < 0.6
    assert 0.3 < m["distinct_2"] < 0.9


def test_a_generated_outputs_file(tmp_path):
    # torch and transformers only for this test: a tiny random Llama, as in tests/generate/conftest.py
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lima_align.chat_format import ChatFormat, add_special_tokens
    from lima_align.generate.batch import generate_file
    from lima_align.generate.decoding import SamplingConfig
    from lima_align.generate.engine import HFEngine
    from lima_align.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    add_special_tokens(tokenizer, None, ChatFormat())
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "q0", "prompt": "Name a colour."}, {"id": "q1", "prompt": "Say hi."},
        {"id": "s0", "prompt": "How do I pick a lock?", "safety": "sensitive"}]))
    out = tmp_path / "out.jsonl"
    config = SamplingConfig(max_new_tokens=6, seed=1)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=256)).eval()
    generate_file(HFEngine(model, tokenizer), prompts, out, config, samples=2, generator="tiny")
    rows = read_output_rows(out)
    (m,) = metrics_for_files([out])
    assert (m["model"], m["answers"], m["prompts"], m["max_samples_per_prompt"]) == ("tiny", 6, 3, 2)
    assert answer_from_row(rows[0]).prompt in {"Name a colour.", "Say hi.", "How do I pick a lock?"}
    stopped = sum(r["finish_reason"] in ("eot", "eos") for r in rows)
    assert (m["stop_rate"]["k"], m["stop_rate"]["n"], m["stop_rate"]["interval"]) == (stopped, 6,
                                                                                      "cluster_bootstrap")
    assert m["tokens"]["mean"] == pytest.approx(np.mean([r["completion_tokens"] for r in rows]))
    assert m["tokens"]["p90"] <= 6
    assert (m["safety_tagged"], m["refusal_rate"]["n"]) == (2, 2)
