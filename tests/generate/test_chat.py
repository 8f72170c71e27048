"""The terminal chat, driven by scripted stdin: through the library and through the real command."""

import io
import json
import subprocess
import sys

from lima_align.generate.chat import ChatSession, StreamDecoder, run_chat
from lima_align.generate.engine import HFEngine, Request
from lima_align.generate.decoding import SamplingConfig

CONFIG = SamplingConfig(temperature=0.7, max_new_tokens=5, seed=3)


def test_stream_decoder_never_splits_a_character(tokenizer):
    text = "Café ☕ costs 3€ — 日本語 🙂🎉 ok"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    decoder = StreamDecoder(tokenizer, skip_ids={tokenizer.convert_tokens_to_ids("<|eot|>")})
    deltas = [decoder.push(i) for i in ids + [tokenizer.convert_tokens_to_ids("<|eot|>")]]
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)
    assert "" in deltas[:-1]  # some token held half a character back
    assert decoder.finish(text) == ""


def test_stream_decoder_finish_flushes_to_the_final_text(tokenizer):
    decoder = StreamDecoder(tokenizer)
    emoji = tokenizer("🙂", add_special_tokens=False)["input_ids"]
    assert decoder.push(emoji[0]) == ""  # an incomplete character is held back ...
    assert decoder.finish("🙂") == "🙂"  # ... until the final text is known


def _stream(tokenizer, text, stop):
    decoder = StreamDecoder(tokenizer, stop=stop)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    deltas = [decoder.push(i) for i in ids]
    return decoder, deltas, ids


def test_a_stream_never_shows_a_stop_string_split_over_tokens(tokenizer):
    stop = "### User:"
    text = "First line.\n### User: next question\nmore"
    decoder, deltas, ids = _stream(tokenizer, text, (stop,))
    assert len(ids) > 6 and "".join(deltas) == "First line.\n" and decoder.stopped
    shown = ""
    for delta in deltas:  # no moment at which the client saw the beginning of the stop string
        shown += delta
        assert not any(stop.startswith(shown[-k:]) for k in range(1, min(len(shown), len(stop)) + 1))
    assert decoder.finish("First line.\n") == ""


def test_a_held_back_tail_that_is_not_a_stop_string_is_shown_when_the_next_tokens_tell(tokenizer):
    text = "a ## b ### c"
    decoder, deltas, ids = _stream(tokenizer, text, ("### User:",))
    assert [tokenizer.decode([i]) for i in ids] == ["a", " ##", " b", " ###", " c"]
    assert deltas == ["a", " ", "## b", " ", "### c"]  # "##" and "###" wait for the token after them
    assert decoder.finish(text) == "" and not decoder.stopped
    decoder, deltas, _ = _stream(tokenizer, "x STOP y", ("STOP", "x S"))
    assert "".join(deltas) == "" and decoder.stopped  # the earliest stop string wins


def _chat(engine, script: str, session=None):
    session = session or ChatSession("tiny", CONFIG)
    out = io.StringIO()
    replies = run_chat(engine, session, io.StringIO(script), out)
    return session, out.getvalue(), replies


def test_scripted_chat_streams_replies_of_the_whole_history(model, tokenizer, tmp_path):
    engine = HFEngine(model, tokenizer)
    streamed: list[str] = []

    class Tee(io.StringIO):
        def write(self, s):
            streamed.append(s)
            return super().write(s)

    session = ChatSession("tiny", CONFIG)
    run_chat(engine, session, io.StringIO("hello there\n\nand then?\n"), Tee())
    first, second = session.turns[1], session.turns[3]
    assert session.turns[::2] == ["hello there", "and then?"]
    # each reply is what the engine gives for the whole history so far (the training template)
    (direct,) = engine.generate([Request(f"{session.id}/1", session.turns[:3])], CONFIG)
    assert direct.text == second
    assert "".join(streamed) == first + "\n" + second + "\n"
    assert len(streamed) > 4  # written piece by piece, not one reply at a time


def test_commands_save_reset_quit(model, tokenizer, tmp_path):
    engine = HFEngine(model, tokenizer)
    out_file = tmp_path / "chats" / "t.jsonl"
    script = f"q1\n/save {out_file}\n/reset\n/save {out_file}\nq2\n/save {out_file}\n/nope\n/quit\nnever\n"
    session, output, replies = _chat(engine, script)
    assert replies == 2 and session.turns[0] == "q2" and len(session.turns) == 2
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [r["conversations"][0] for r in rows] == ["q1", "q2"]
    assert rows[0]["id"] != rows[1]["id"]
    for row in rows:
        assert row["source"] == "chat" and len(row["conversations"]) == 2
        assert row["meta"]["generator"] == "tiny" and row["meta"]["sampling"]["temperature"] == 0.7
    assert "[history cleared]" in output and "[nothing to save yet]" in output and "unknown command" in output


def test_history_over_the_context_is_an_error_not_a_crash(tokenizer, make_model):
    engine = HFEngine(make_model(24), tokenizer)
    session, output, replies = _chat(engine, "hi\n" + "word " * 40 + "\nhi\n")
    assert replies == 2 and "no longer fits" in output
    assert session.turns[::2] == ["hi", "hi"]  # the too-long turn was not kept


def test_chat_command_with_piped_stdin(tmp_path):
    saved = tmp_path / "t.jsonl"
    script = f"Say hello.\nAnd again?\n/save {saved}\n"  # then EOF ends the session
    result = subprocess.run(
        [sys.executable, "-m", "lima_align", "chat", "--model", "smollm2-135m-instruct", "--add-eot",
         "--device", "cpu", "--temperature", "0", "--max-new-tokens", "6"],
        input=script, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    (row,) = [json.loads(line) for line in saved.read_text().splitlines()]
    assert row["source"] == "chat" and row["conversations"][::2] == ["Say hello.", "And again?"]
    assert f"saved 4 turns to {saved}" in result.stdout
    assert result.stdout.startswith(row["conversations"][1])
