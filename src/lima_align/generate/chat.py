"""Interactive multi-turn chat in a terminal, streaming the reply as it is generated.

The history is rendered with THE training template (the engine calls :func:`lima_align.chat_format.render`),
so a chat sees exactly what the model was fine-tuned on. Commands: ``/reset`` (forget the history), ``/save
FILE`` (append the transcript to FILE as one conversation row of the data model, ``source="chat"``),
``/quit``; end of input (Ctrl-D, or the end of a scripted stdin) ends the session too.

:class:`StreamDecoder` turns token ids into text incrementally without splitting a multi-byte character (a
token can hold half of an emoji's UTF-8 bytes); the server streams with it too.
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TextIO

from lima_align.generate.engine import Request
from lima_align.generate.decoding import SamplingConfig, find_stop

_REPLACEMENT = "\ufffd"  # what decode() gives for an incomplete UTF-8 sequence


class StreamDecoder:
    """Decode a growing list of token ids into text deltas (the sliding-window scheme vLLM uses).

    Each ``push`` decodes a small window twice - the tokens already shown, and the same plus the new ones -
    and returns the difference; it returns nothing while the text ends in an incomplete character.
    ``skip_ids`` (EOT, EOS) are never shown. The concatenated deltas equal
    ``tokenizer.decode(ids, skip_special_tokens=True)`` up to a held-back incomplete tail; :meth:`finish`
    flushes against the authoritative final text. With ``stop`` strings, text from the first one on is never
    shown, and a tail that may be the start of one is held back until the next tokens tell.
    """

    def __init__(self, tokenizer: Any, skip_ids: Iterable[int] = (), stop: Sequence[str] = ()):
        self.tokenizer = tokenizer
        self.skip_ids = set(skip_ids)
        self.stop = tuple(s for s in stop if s)
        self.ids: list[int] = []
        self.prefix = 0  # window start: decoding from here keeps spacing/merges right
        self.read = 0  # tokens already turned into text
        self.text = ""  # all decoded text
        self.shown = ""  # what was shown of it
        self.stopped = False

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        if token_id in self.skip_ids or self.stopped:
            return ""
        self.ids.append(token_id)
        before = self._decode(self.ids[self.prefix:self.read])
        after = self._decode(self.ids[self.prefix:])
        if len(after) <= len(before) or after.endswith(_REPLACEMENT):
            return ""
        self.text += after[len(before):]
        self.prefix, self.read = self.read, len(self.ids)
        end = len(self.text)
        if self.stop:
            at = find_stop(self.text, self.stop)
            self.stopped = at >= 0
            end = at if self.stopped else end - _stop_prefix(self.text, self.stop)
        delta = self.text[len(self.shown):end]
        self.shown += delta
        return delta

    def finish(self, final_text: str) -> str:
        """What is left to show so that everything shown equals ``final_text`` (normally a held-back tail)."""
        rest = final_text[len(self.shown):] if final_text.startswith(self.shown) else ""
        self.shown += rest
        return rest


def _stop_prefix(text: str, stop: Sequence[str]) -> int:
    """The length of the longest tail of ``text`` that is the beginning of a ``stop`` string (0: none)."""
    longest = min(len(text), max(map(len, stop)) - 1)
    return next((k for k in range(longest, 0, -1) if any(s.startswith(text[-k:]) for s in stop)), 0)


@dataclass
class ChatSession:
    """The history of one chat: alternating user/assistant turns, starting with the user."""

    model: str
    config: SamplingConfig
    turns: list[str] = field(default_factory=list)
    id: str = field(default_factory=lambda: f"chat-{uuid.uuid4().hex[:12]}")
    replies: int = 0  # answered turns since the start (seeds each reply differently, reproducibly)

    def reset(self) -> None:
        self.turns = []
        self.id = f"chat-{uuid.uuid4().hex[:12]}"

    def to_row(self) -> dict[str, Any]:
        """The transcript as a conversation row of the project's data model."""
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        return {"id": self.id, "conversations": list(self.turns), "source": "chat",
                "meta": {"generator": self.model, "sampling": self.config.to_dict(), "saved_at": now}}


def reply(engine: Any, session: ChatSession, user_text: str, emit: Callable[[str], None]) -> str | None:
    """Answer ``user_text`` given the history, calling ``emit`` with each text delta; return the answer.

    On an error (the history no longer fits the context) the user turn is not kept and None is returned.
    """
    turns = session.turns + [user_text]
    request = Request(f"{session.id}/{session.replies}", turns)
    decoder = StreamDecoder(engine.tokenizer, engine.stop_ids)
    (completion,) = engine.generate([request], session.config,
                                    on_token=lambda _i, tok: _emit_nonempty(emit, decoder.push(tok)))
    if completion.finish_reason == "error":
        return None
    _emit_nonempty(emit, decoder.finish(completion.text))
    session.turns = turns + [completion.text]
    session.replies += 1
    return completion.text


def _emit_nonempty(emit: Callable[[str], None], text: str) -> None:
    if text:
        emit(text)


def save_transcript(session: ChatSession, path: str | Path) -> Path:
    """Append the transcript to ``path`` (JSONL), creating folders as needed."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(session.to_row(), ensure_ascii=False) + "\n")
    return path


HELP = "commands: /reset (new conversation), /save FILE (append transcript as JSONL), /quit; Ctrl-D ends"


def run_chat(engine: Any, session: ChatSession, stdin: TextIO, stdout: TextIO, *, prompt: str = "",
             reply_prefix: str = "") -> int:
    """Read user turns line by line from ``stdin`` and stream replies to ``stdout`` until /quit or EOF.

    ``prompt`` is shown before each input line and ``reply_prefix`` before each reply (the CLI sets them for a
    terminal and leaves them empty for scripted input). Returns the number of replies given.
    """
    def write(text: str) -> None:
        stdout.write(text)
        stdout.flush()

    answered = 0
    while True:
        write(prompt)
        line = stdin.readline()
        if not line:  # EOF
            write("\n" if prompt else "")
            return answered
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if text.startswith("/"):
            if not _command(text, session, write):
                return answered
            continue
        write(reply_prefix)
        if reply(engine, session, text, write) is None:
            write("[error: the conversation no longer fits the model's context; /reset to start again]\n")
            continue
        write("\n")
        answered += 1


def _command(text: str, session: ChatSession, write: Callable[[str], None]) -> bool:
    """Run a /command; False means quit."""
    name, _, arg = text.partition(" ")
    arg = arg.strip()
    if name == "/quit":
        return False
    if name == "/reset":
        session.reset()
        write("[history cleared]\n")
    elif name == "/save" and arg:
        if not session.turns:
            write("[nothing to save yet]\n")
        else:
            write(f"[saved {len(session.turns)} turns to {save_transcript(session, arg)}]\n")
    elif name == "/save":
        write("[usage: /save FILE]\n")
    else:
        write(f"[unknown command {name}; {HELP}]\n")
    return True
