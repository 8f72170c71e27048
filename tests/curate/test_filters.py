"""The LIMA Stack Exchange rules: each filter returns None or a reason key described in REASONS."""

from __future__ import annotations

import pytest

from lima_align.curate.filters import (REASONS, answer_reason, first_person_reason, length_reason,
                                       question_reason, reference_reason, score_reason)

GOOD = "The boil drives off volatile compounds and sterilizes the wort. " * 25


@pytest.mark.parametrize("title, body, closed, reason", [
    ("Why boil wort?", "<p>What does the boil do to the wort?</p>", False, None),
    ("", "<p>body</p>", False, "question_empty"),
    ("Title", "  ", False, "question_empty"),
    ("Title", "<p>What does the boil do?</p>", True, "question_closed"),
    ("Boil [duplicate]", "<p>What does the boil do?</p>", False, "question_duplicate"),
    ("Boil", "<blockquote>Possible Duplicate: x</blockquote><p>What does it do?</p>", False, "question_duplicate"),
    ("Boil", '<p>What is this?</p><img src="x.png">', False, "question_image"),
    ("Boil", '<p><a href="http://x.y/long-article">http://x.y/long-article</a></p>', False,
     "question_link_only"),
    ("Boil", '<p>Following <a href="https://beer.stackexchange.com/questions/12/x">that</a>, why does the boil matter?</p>', False,
     "question_refers_to_posts"),
    ("Boil", "<p>I searched this site but found nothing about the boil.</p>", False, "question_refers_to_posts"),
    ("Boil", "<p>Unlike the other question, I ask about the boil.</p>", False, "question_refers_to_posts"),
])
def test_question_reason(title, body, closed, reason):
    assert question_reason(title, body, closed) == reason
    assert reason is None or reason in REASONS


def test_answer_rules_in_order():
    assert answer_reason(GOOD, 1200, 4096) is None
    assert answer_reason(GOOD[:500], 1200, 4096) == "answer_too_short"
    assert answer_reason(GOOD * 3, 1200, 4096) == "answer_too_long"
    assert answer_reason("I think " + GOOD, 1200, 4096) == "answer_first_person"
    assert answer_reason("I think " + GOOD, 1200, 4096, first_person=False) is None
    assert answer_reason("As mentioned above, " + GOOD, 1200, 4096) == "answer_refers_to_others"
    assert answer_reason("As mentioned above, " + GOOD, 1200, 4096, references=False) is None
    assert length_reason("x" * 1200, 1200, 4096) is None and length_reason("x" * 4097, 1200, 4096)
    assert score_reason(None, 10) == score_reason(9, 10) == "no_answer_min_score" and score_reason(10, 10) is None


@pytest.mark.parametrize("text, hit", [
    ("In my experience the boil matters.", True),
    ("I'm sure the boil matters.", True),
    ("Give me a moment.", True),
    ("MY view.", True),
    ("Myriad compounds and iodine in mining shafts: IPA, IBU.", False),
    ("Code only:\n\n```\nmy $x = I + 1;\n```\n\nand `my_var` is fine.", False),
])
def test_first_person(text, hit):
    assert (first_person_reason(text) is not None) == hit


@pytest.mark.parametrize("text, hit", [
    ("As mentioned in another answer, boil longer.", True),
    ("This answer covers lagers.", True),
    ("Search Stack Exchange for more.", True),
    ("See the accepted answer.", True),
    ("Thanks @brewer, good point.", True),
    ("The answer depends on the yeast; as a rule, boil for an hour.", False),
    ("Mail brewer@example.com for details.", False),
])
def test_references(text, hit):
    assert (reference_reason(text) is not None) == hit
