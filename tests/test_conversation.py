import pytest

from lima_align.conversation import (Example, OddTurns, ReadReport, Where, apply_odd_turns, make_example,
                                     provenance, turns_from_roles)
from lima_align.errors import DataError


def where(line=3):
    return Where("data/train.jsonl", line, 2)


def test_make_example_defaults_id_source_and_origin():
    ex = make_example(["Hi?", "Hello."], where())
    assert ex.id == "train-00002"
    assert ex.source == "train"
    assert ex.meta == {"origin": "train.jsonl"}
    assert ex.prompt == "Hi?" and ex.response == "Hello."
    assert not ex.is_prompt_only


def test_messages_alternate_starting_with_user():
    ex = Example("a", ["q1", "a1", "q2"], "s")
    assert [m["role"] for m in ex.messages()] == ["user", "assistant", "user"]
    assert ex.is_prompt_only and ex.user_turns == ["q1", "q2"] and ex.assistant_turns == ["a1"]


@pytest.mark.parametrize("turns, field, problem", [
    (["q", "  "], "conversations[1]", "empty assistant turn"),
    (["", "a"], "conversations[0]", "empty user turn"),
    (["q", 3], "conversations[1]", "expected a string, got int"),
    ([], "conversations", "empty conversation"),
    ("q", "conversations", "expected a list of strings, got str"),
    (None, "conversations", "expected a list of strings, got NoneType"),
])
def test_bad_turns_name_file_line_and_field(turns, field, problem):
    with pytest.raises(DataError) as err:
        make_example(turns, where(7))
    assert str(err.value) == f"data/train.jsonl:7: field '{field}': {problem}"


def test_turn_fields_name_the_users_field():
    with pytest.raises(DataError, match="field 'output': empty assistant turn"):
        make_example(["q", ""], where(), turn_fields=["instruction", "output"])


@pytest.mark.parametrize("kwargs, field", [({"meta": [1]}, "meta"), ({"source": ""}, "source"),
                                           ({"id": True}, "id"), ({"id": " "}, "id")])
def test_bad_metadata_fields(kwargs, field):
    with pytest.raises(DataError, match=f"field '{field}'"):
        make_example(["q", "a"], where(), **kwargs)


def test_roles_must_alternate_from_user():
    with pytest.raises(DataError, match=r"field 'messages\[1\]': expected role 'assistant'.*got 'user'"):
        turns_from_roles([("user", "a"), ("user", "b")], where(), "messages")
    with pytest.raises(DataError, match=r"messages\[0\].*expected role 'user'"):
        turns_from_roles([("assistant", "a")], where(), "messages")
    assert turns_from_roles([("user", "a"), ("assistant", "b")], where(), "m") == ["a", "b"]


def test_odd_turns_policy_keeps_or_drops_with_reason():
    report = ReadReport()
    prompt_only = Example("p", ["only a prompt"])
    assert apply_odd_turns(prompt_only, OddTurns.KEEP, report) is prompt_only
    assert apply_odd_turns(prompt_only, OddTurns.DROP, report) is None
    assert apply_odd_turns(Example("x", ["q", "a"]), OddTurns.DROP, report) is not None
    assert report.dropped == {"odd number of turns (no final response)": 1}


def test_provenance_block():
    meta = provenance("beer.stackexchange.com", "CC BY-SA 4.0", url="https://x/q/1", source_id=12,
                      prompt_field="title")
    assert meta == {"origin": "beer.stackexchange.com", "license": "CC BY-SA 4.0", "url": "https://x/q/1",
                    "source_id": "12", "curation": {"prompt_field": "title"}}


def test_to_dict_is_gair_lima_superset():
    row = Example("i", ["q", "a"], "wikihow", {"license": "x"}).to_dict()
    assert row["conversations"] == ["q", "a"] and row["source"] == "wikihow"
    assert set(row) == {"id", "conversations", "source", "meta"}
