from lima_align.conversation import Example
from lima_align.curate.table1 import TokenizerCounter, WhitespaceCounter, format_table, table1


EXAMPLES = [
    Example("1", ["one two three", "a b c d e f"], "wikihow"),
    Example("2", ["x y", "p q r s"], "wikihow"),
    Example("3", ["u1 u2", "a1", "u3", "a2 a3"], "dialogue"),
    Example("4", ["only prompt here ok"], "test"),
]


def test_table1_arithmetic_per_source_and_total():
    d = table1(EXAMPLES).to_dict()
    assert d["unit"] == "whitespace words"
    assert d["sources"]["wikihow"] == {"examples": 2, "prompt_only": 0, "avg_input_tokens": 2.5,
                                       "avg_output_tokens": 5.0, "input_tokens": 5, "output_tokens": 10,
                                       "total_tokens": 15}
    # multi-turn: every user turn is input, every assistant turn output
    assert d["sources"]["dialogue"]["input_tokens"] == 3 and d["sources"]["dialogue"]["output_tokens"] == 3
    total = d["total"]
    assert total["examples"] == 4 and total["prompt_only"] == 1
    assert total["input_tokens"] == 5 + 3 + 4 and total["output_tokens"] == 13
    # output average is over the 3 examples that have a response
    assert total["avg_output_tokens"] == round(13 / 3, 1)
    assert total["avg_input_tokens"] == 3.0


def test_batches_do_not_change_counts():
    many = EXAMPLES * 200  # crosses the internal batch boundary
    d = table1(many).to_dict()
    assert d["total"]["examples"] == 800 and d["total"]["output_tokens"] == 13 * 200


class CharTokenizer:
    def __call__(self, texts, add_special_tokens=True):
        assert add_special_tokens is False
        return {"input_ids": [list(t) for t in texts]}


def test_tokenizer_counter_counts_without_special_tokens():
    d = table1(EXAMPLES[:1], TokenizerCounter(CharTokenizer(), "chars")).to_dict()
    assert d["unit"] == "tokens (chars)"
    assert d["total"]["input_tokens"] == len("one two three")


def test_format_table_shape():
    text = format_table(table1(EXAMPLES, WhitespaceCounter()))
    lines = text.splitlines()
    assert lines[0].split() == ["source", "examples", "avg", "input", "avg", "output", "total", "tokens"]
    assert lines[-2].split()[0] == "total" and "1 prompt-only" in lines[-1]
