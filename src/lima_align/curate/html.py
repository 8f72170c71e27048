"""HTML -> clean text for training responses: links, images and markup go; code blocks and lists stay.

What :func:`html_to_text` produces from a Stack Exchange body (the paper: "strip links, images and other HTML,
keeping only code blocks and lists"):

- ``<pre>`` blocks become fenced code whose text is kept byte-for-byte (the fence grows past any backtick run
  inside), inline ``<code>`` becomes a backtick span;
- ``<ul>``/``<ol>`` become markdown lists (``- item`` / ``1. item``), nested lists indented;
- links keep their text but lose the URL; a link whose text is itself a URL is dropped whole;
- images, scripts, styles, forms and embedded objects are dropped with their content;
- every other tag is removed, its text kept; entities are decoded; prose whitespace is collapsed;
- outside code, bare ``http(s)://`` URLs are removed, and prose that spells a tag (an escaped ``&lt;b&gt;``)
  is wrapped in backticks so that the text carries no markup while keeping its meaning.

The parser is libxml2's HTML parser in recovery mode with network access off: any byte string is accepted.
"""

from __future__ import annotations

import re

from lxml import etree

_PARSER = etree.HTMLParser(no_network=True, remove_comments=True, remove_pis=True, recover=True,
                           remove_blank_text=False)

DROP = frozenset({"img", "script", "style", "iframe", "object", "embed", "svg", "video", "audio", "source",
                  "form", "input", "button", "select", "textarea", "noscript", "head", "title", "meta",
                  "link", "canvas", "map", "template"})
BLOCK = frozenset({"p", "div", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "table", "tr", "thead",
                   "tbody", "section", "article", "header", "footer", "dl", "dt", "dd", "figure", "details",
                   "summary", "hr", "body", "html", "center", "aside", "nav", "main", "address"})
MAX_DEPTH = 80  # deeper nesting (hostile input) is flattened to its text instead of recursing further

_BARE_URL = re.compile(r"(?:https?|ftp)://\S*|www\.[^\s/]+\S*", re.IGNORECASE)
_TAGLIKE = re.compile(r"<!--.*?-->|<[!/?]?[A-Za-z][^<>]*>", re.DOTALL)
_URLISH = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:|www\.)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
_FENCE_RUN = re.compile(r"`+")


def html_to_text(html: str) -> str:
    """Clean text of an HTML fragment (see the module docstring for the rules)."""
    if not html or not html.strip():
        return ""
    # libxml2 refuses control characters; they carry nothing for training, so they go first.
    html = _CONTROL.sub("", html)
    root = etree.fromstring(f"<div>{html}</div>", _PARSER)
    if root is None:
        return ""
    return _render_blocks(root, 0).strip()


def _render_blocks(element: etree._Element, depth: int, joiner: str = "\n\n") -> str:
    renderer = _Renderer(depth)
    renderer.children(element)
    return joiner.join(renderer.finish())


class _Renderer:
    """Walks a tree into blocks (paragraphs, code blocks, lists) with an inline buffer for the current one."""

    def __init__(self, depth: int):
        self.depth = depth
        self.blocks: list[str] = []
        self.inline: list[str] = []

    def finish(self) -> list[str]:
        self.flush()
        return [b for b in self.blocks if b.strip()]

    def flush(self) -> None:
        text = "".join(self.inline)
        self.inline = []
        lines = [line.strip() for line in text.split("\n")]
        text = "\n".join(line for line in lines if line)
        if text:
            self.blocks.append(text)

    def prose(self, text: str | None) -> None:
        if not text:
            return
        # The substring tests skip the regexes for the common text node (no URL, no "<").
        if "://" in text or "www." in text or "WWW." in text:
            text = _BARE_URL.sub("", text)
        # str.split is the fast way to collapse whitespace; it drops the edges, which are put back as one space.
        words = " ".join(text.split())
        text = (" " if text[:1].isspace() else "") + words + (" " if words and text[-1:].isspace() else "")
        if self.inline and self.inline[-1][-1:] in (" ", "\n"):
            text = text.lstrip(" ")
        if "<" in text:
            text = _TAGLIKE.sub(lambda m: _code_span(m.group(0)), text)
        if text:
            self.inline.append(text)

    def children(self, element: etree._Element) -> None:
        self.prose(element.text)
        for child in element:
            self.node(child)
            self.prose(child.tail)

    def node(self, el: etree._Element) -> None:
        tag = el.tag.lower() if isinstance(el.tag, str) else ""
        if not tag or tag in DROP:
            return
        if self.depth > MAX_DEPTH:
            self.prose(el.xpath("string()"))
        elif tag == "pre":
            self.flush()
            self.blocks.append(_fenced(el.xpath("string()")))
        elif tag == "code":
            self.inline.append(_code_span(el.xpath("string()")))
        elif tag == "br":
            self.inline.append("\n")
        elif tag == "a":
            if not _URLISH.match(el.xpath("string()")):
                self.children(el)
        elif tag in ("ul", "ol"):
            self.flush()
            self.blocks.append(_render_list(el, tag == "ol", self.depth + 1))
        elif tag in BLOCK or tag == "li":
            self.flush()
            self.children(el)
            self.flush()
        else:
            self.children(el)


def _render_list(el: etree._Element, ordered: bool, depth: int) -> str:
    """A markdown list; item continuation lines are indented, fenced code lines are kept as they are."""
    items = []
    number = 1
    for child in el:
        if not isinstance(child.tag, str) or child.tag.lower() in DROP:
            continue
        # Items are tight (blocks joined by one newline) so that a nested list stays inside its item.
        body = _render_blocks(child, depth, "\n") if child.tag.lower() == "li" else _render_blocks_of(child, depth)
        if not body:
            continue
        marker = f"{number}. " if ordered else "- "
        number += 1
        items.append(marker + _indent_continuation(body, " " * len(marker)))
    return "\n".join(items)


def _render_blocks_of(el: etree._Element, depth: int) -> str:
    """A stray non-``<li>`` child of a list is rendered as an item of its own."""
    renderer = _Renderer(depth)
    renderer.node(el)
    return "\n\n".join(renderer.finish())


def _indent_continuation(body: str, pad: str) -> str:
    out = []
    in_code = False
    for i, line in enumerate(body.split("\n")):
        # Fence lines toggle code state; code lines keep their exact bytes (no list indentation).
        is_fence = line.startswith("```")
        if i == 0 or in_code or is_fence or not line:
            out.append(line)
        else:
            out.append(pad + line)
        if is_fence:
            in_code = not in_code
    return "\n".join(out)


def _fenced(code: str) -> str:
    """A fenced code block longer than any backtick run in ``code``, so the code cannot close it."""
    longest = max((len(m) for m in _FENCE_RUN.findall(code)), default=0)
    fence = "`" * max(3, longest + 1)
    body = code[:-1] if code.endswith("\n") else code
    return f"{fence}\n{body}\n{fence}"


def _code_span(code: str) -> str:
    longest = max((len(m) for m in _FENCE_RUN.findall(code)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if code.startswith("`") or code.endswith("`") else ""
    return f"{ticks}{pad}{code}{pad}{ticks}"


_FENCED_BLOCK = re.compile(r"^(`{3,})\n.*?\n\1$", re.DOTALL | re.MULTILINE)
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)


def strip_code(text: str) -> str:
    """``text`` without its fenced code blocks and inline code spans (for checks that concern prose only)."""
    if "`" not in text:  # no code at all (most answers): nothing to strip
        return text
    return _INLINE_CODE.sub(" ", _FENCED_BLOCK.sub("\n", text))
