"""What the pages show: safe Markdown of untrusted model text, the paper's instruction text, and the view of
one item for one annotator. The HTML itself lives in ``templates/`` (Jinja2, autoescaped)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from markupsafe import Markup

from lima_align.annotate.study import TEMPLATES
from lima_align.formats.turns import render_turns

HERE = Path(__file__).parent
SHORTCUTS = {
    "pairwise": [("1 / a", "Answer A (left) is significantly better"), ("2 / b", "Answer B (right) is significantly better"),
                 ("3 / n", "Neither is significantly better")],
    "absolute": [("1 / f", "Fail"), ("2 / p", "Pass"), ("3 / e", "Excellent")],
    "multiturn": [("1 / 2 / 3", "Fail / Pass / Excellent for the current turn (Tab moves on)"),
                  ("Enter", "save when every turn is rated")],
    "review": [("a", "accept"), ("r", "reject"), ("e", "edit (Ctrl+Enter saves the edit)")],
}
COMMON_SHORTCUTS = [("j / →", "next item"), ("k / ←", "previous item"), ("u", "next unlabelled item")]


@lru_cache(maxsize=1)
def _md():
    from markdown_it import MarkdownIt

    # "html": False escapes raw HTML; links with javascript:/vbscript:/file:/data: are refused by markdown-it's
    # validateLink; images are off so that no rendered content fetches anything (the CSP blocks it as well).
    md = MarkdownIt("commonmark", {"html": False}).disable("image")

    def link_open(self, tokens, idx, options, env):
        tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
        tokens[idx].attrSet("referrerpolicy", "no-referrer")
        return self.renderToken(tokens, idx, options, env)

    md.add_render_rule("link_open", link_open)
    return md


def markdown(text: str) -> Markup:
    """Untrusted Markdown to inert HTML (raw HTML escaped, no scripts, no images, no javascript: links)."""
    return Markup(_md().render(text or ""))


@lru_cache(maxsize=None)
def ui_text(kind: str) -> dict[str, Any]:
    """The instruction, the question and the choices / definitions, read from the judge's prompt file so that
    humans and the LLM judge get exactly the same words."""
    if kind not in TEMPLATES:
        return {"instruction": "Accept the candidate as a training example, reject it, or edit it and save.",
                "choices": []}
    from lima_align.evaluate.templates import load_template

    lines = [x.strip() for x in load_template(TEMPLATES[kind]).text.splitlines()]
    choices = [x[2:] for x in lines if x.startswith("- ")]
    if kind == "pairwise":
        question = next(x for x in lines if x.startswith("Comparing"))
        return {"instruction": lines[0], "question": question, "choices": choices}
    definitions = [tuple(part.strip() for part in c.split(":", 1)) for c in choices]
    return {"instruction": lines[0], "definitions": definitions, "choices": [d[0] for d in definitions]}


def item_view(kind: str, rec: Any, queue: list[Any]) -> dict[str, Any]:
    """Everything the item page needs for one assignment row of the annotator's queue."""
    payload = json.loads(rec["payload"])
    label = json.loads(rec["label"]) if rec["label"] is not None else None
    ids = [r["item_id"] for r in queue]
    pos = ids.index(rec["item_id"])
    pending = [r["item_id"] for r in queue[pos + 1:] + queue[:pos] if r["label"] is None]
    view: dict[str, Any] = {"kind": kind, "item_id": rec["item_id"], "pos": pos + 1, "total": len(ids),
                            "done": sum(r["label"] is not None for r in queue), "label": label,
                            "prev": ids[pos - 1] if pos > 0 else None,
                            "next": ids[pos + 1] if pos + 1 < len(ids) else None,
                            "next_pending": pending[0] if pending else None,
                            "prompt": markdown(payload.get("prompt", "")), "text": ui_text(kind),
                            "shortcuts": SHORTCUTS[kind] + COMMON_SHORTCUTS, "revision": rec["revision"]}
    if kind == "pairwise":
        left, right = ("b", "a") if rec["swap"] else ("a", "b")
        view["answers"] = [("A", markdown(payload["answers"][left])), ("B", markdown(payload["answers"][right]))]
    elif kind == "absolute":
        view["answer"] = markdown(payload["answers"]["a"])
    elif kind == "multiturn":
        conv = payload["conversation"]
        view["turns"] = [{"n": i // 2 + 1, "user": markdown(conv[i]), "assistant": markdown(conv[i + 1]),
                          "label": label[i // 2] if label else None} for i in range(0, len(conv) - 1, 2)]
    else:
        conv = (label or {}).get("conversations") or payload["example"]["conversations"]
        view["turns"] = [{"role": "User" if i % 2 == 0 else "Assistant", "html": markdown(t)}
                         for i, t in enumerate(payload["example"]["conversations"])]
        view["edit_text"] = render_turns(conv)
        view["source"] = payload["example"].get("source", "")
    return view
