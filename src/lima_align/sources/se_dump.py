"""Streaming reader of a Stack Exchange ``Posts.xml``: from a file, a directory or a ``.7z`` archive, in constant memory.

Bytes are fed in chunks to lxml's pull parser (entity resolution, DTD loading and network access off), so no
``Posts.xml`` is ever held whole in memory and a ``.7z`` is decompressed as a stream, never extracted to disk
(:mod:`lima_align.sources.se_archive`: 7-Zip when on PATH, else py7zr). Each ``<row>`` is turned into a small
:class:`Post` (questions and answers only; other post types are only counted) and freed at once.

A plain ``Posts.xml`` can be read as byte ranges (:func:`split_spans`) by several processes: every dump has
one ``<row .../>`` per line, and a line that starts with ``<row`` always starts a row (XML forbids a raw ``<``
inside an attribute value), so a range cut at such a line and wrapped in the root element is well-formed XML.
(A comment or CDATA section spanning lines that start with ``<row`` would break that; no dump holds one, and a
file whose first row does not follow its root's start tag is read as one range.)

Dump quirks accepted: a UTF-8 BOM, ``<!DOCTYPE ...>`` lines, ``Tags`` as ``<a><b>`` or ``|a|b|``, post types
other than 1 and 2. A dump that declares XML entities (``<!ENTITY``, the "billion laughs" and external-entity
attacks) is refused: libxml2 expands internal entities inside attribute values even with entity resolution
off, and a real dump declares none. The decision is libxml2's own view of the document type (its internal DTD
subset, read before the first row is used), so neither the encoding, nor padding, nor a comment before the
declaration gets past it; a byte scan of the first chunk refuses the plain case before parsing. Broken input (truncated or corrupt archive or XML, invalid UTF-8) raises a
:class:`~lima_align.errors.DataError` naming the file, line and byte offset; a row with missing or bad
attributes is a counted skip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator

from lxml import etree

from lima_align.curate.filters import PLANTED_POST_IDS
from lima_align.errors import DataError
from lima_align.sources.se_archive import CHUNK, find_member, iter_member
from lima_align.sources.se_sites import canonical_site, site_from_path

QUESTION, ANSWER = 1, 2


@dataclass(frozen=True)
class DumpInput:
    """One site's dump: where its Posts.xml bytes come from, and the site it belongs to."""

    path: Path  # the .7z archive or the Posts.xml file
    site: str
    member: str | None = None  # the Posts.xml member inside a .7z
    size: int = 0  # uncompressed bytes, for progress


@dataclass(slots=True)
class Post:
    """The fields of a question (type 1) or answer (type 2) row that curation uses."""

    id: int
    type: int
    score: int
    body: str
    parent: int = 0
    title: str = ""
    tags: str = ""  # raw: parse with parse_tags
    closed: bool = False
    created: str = ""
    edited: str = ""
    owner: int = 0


def resolve_input(path: str | Path, site: str | None = None) -> DumpInput:
    """A dump path (``.7z``, directory holding ``Posts.xml``, or ``Posts.xml``) as a :class:`DumpInput`."""
    p = Path(path)
    if not p.exists():
        raise DataError("no such file or directory", p)
    name = canonical_site(site) if site else site_from_path(p)
    if p.is_dir():
        xml = next((c for c in sorted(p.iterdir()) if c.name.lower() == "posts.xml"), None)
        if xml is None:
            raise DataError("directory holds no Posts.xml", p)
        return DumpInput(xml, name, size=xml.stat().st_size)
    if p.suffix.lower() == ".7z":
        member, size = find_member(p)
        return DumpInput(p, name, member, size)
    return DumpInput(p, name, size=p.stat().st_size)


def dump_label(dump: DumpInput) -> str:
    """How reports and errors name a dump: the file, or ``archive:member``."""
    return f"{dump.path}:{dump.member}" if dump.member else str(dump.path)


def parse_tags(raw: str | None) -> tuple[str, ...]:
    """Tags from either dump encoding: ``<a><b>`` (older dumps) or ``|a|b|`` (2023 and later)."""
    if not raw:
        return ()
    sep = "|" if raw.startswith("|") else None
    parts = raw.split("|") if sep else raw.replace("<", " ").replace(">", " ").split()
    return tuple(t for t in (p.strip() for p in parts) if t)


def iter_chunks(dump: DumpInput, span: tuple[int, int] | None = None) -> Iterator[bytes]:
    """The Posts.xml bytes of a dump, in chunks of about 1 MiB (of a plain file: only ``span``, if given)."""
    if dump.member is None:
        start, end = span or (0, None)
        with dump.path.open("rb") as fh:
            fh.seek(start)
            left = None if end is None else end - start
            while (left is None or left > 0) and (chunk := fh.read(CHUNK if left is None else min(CHUNK, left))):
                if left is not None:
                    left -= len(chunk)
                yield chunk
    elif span is not None:
        raise ValueError("a .7z member is a stream: it cannot be read by byte range")
    else:
        yield from iter_member(dump.path, dump.member)


_ROW_LINE = re.compile(rb"\n[ \t]*<row[ \t/>]")
_FIRST_ROW = re.compile(rb"<row[\s/>]")
_ROOT_OPEN = re.compile(rb"<([A-Za-z_][\w.:-]*)(?:\s[^<>]*)?>\s*$")
_XML_DECL = re.compile(rb"<\?xml\s[^<>]*\?>")
SCAN = 1 << 16


def row_start(fh: IO[bytes], pos: int, size: int) -> int | None:
    """The offset of the first line at or after ``pos`` that starts a row (``<row`` after indentation).

    ``pos`` itself counts when it is a line start (the byte before it is a newline) and that line is a row;
    otherwise the search goes on from the next newline. None when no row starts after ``pos``.
    """
    if pos <= 0:
        pos = 1
    fh.seek(pos - 1)
    base = pos - 1
    carry = b""
    while base < size:
        block = fh.read(SCAN)
        if not block:
            return None
        data = carry + block
        if (found := _ROW_LINE.search(data)) is not None:
            return base - len(carry) + found.start() + 1
        carry = data[-32:]  # a newline + indentation + "<row " cut by the block end
        base += len(block)
    return None


def split_spans(path: Path, parts: int, min_bytes: int) -> list[tuple[int, int]]:
    """Cut a plain Posts.xml into at most ``parts`` byte ranges of at least ~``min_bytes``, each starting at a
    row's line (the first also holds the prolog, the last the closing tag); one range when the file is small or
    has no row lines to cut at (a dump written on one line)."""
    size = path.stat().st_size
    parts = max(1, min(parts, size // max(1, min_bytes)))
    if parts > 1 and range_wrapping(path) is None:
        parts = 1
    cuts = [0]
    with path.open("rb") as fh:
        for i in range(1, parts):
            cut = row_start(fh, size * i // parts, size)
            if cut is not None and cut > cuts[-1]:
                cuts.append(cut)
    return [(start, end) for start, end in zip(cuts, [*cuts[1:], size])]


def range_wrapping(path: Path) -> tuple[bytes, bytes] | None:
    """What a byte range after the first needs to be a document of its own: the XML declaration and the root's
    whole start tag (attributes and namespaces included) before it, the root's end tag after it. None when the
    prolog is not the plain shape of a dump (the root's start tag right before the first row): such a file is
    read as one range."""
    with path.open("rb") as fh:
        head = fh.read(SCAN)
    first = _FIRST_ROW.search(head)
    if first is None:
        return None
    prolog = head[: first.start()]
    root = _ROOT_OPEN.search(prolog)
    if root is None or root.group(0).endswith(b"/>"):
        return None
    decl = _XML_DECL.match(prolog.removeprefix(b"\xef\xbb\xbf").lstrip())
    return (decl.group(0) if decl else b"") + root.group(0).rstrip(), b"</" + root.group(1) + b">"


def iter_rows(dump: DumpInput, counts: dict[str, int], progress: Callable[[int], None] | None = None,
              span: tuple[int, int] | None = None) -> Iterator[tuple[int, etree._Element]]:
    """``(post type, row element)`` for each question and answer row of a dump, in file order.

    The element is valid only until the next row is read (it is cleared then: the tree never grows past one
    row), so read it with :func:`read_question` / :func:`read_answer` at once. ``counts`` receives the rows
    read per post type (``"1"``, ``"2"``, ``"4"``...). With ``span`` (a range from :func:`split_spans`) only the
    rows of that byte range are read; a range after the first is wrapped in the root element's tags.
    """
    where = None
    for parser, where in _parsed(dump, progress, span):
        yield from _drain(parser, counts, where)
    _check_rows(counts, span, where)


def scan_rows(dump: DumpInput, counts: dict[str, int], on_question: Callable[[etree._Element], None],
              on_answer: Callable[[etree._Element], None], progress: Callable[[int], None] | None = None,
              span: tuple[int, int] | None = None) -> None:
    """:func:`iter_rows` as callbacks: the fast path of a pass over a whole dump (no generator per row; the rows
    of each chunk are freed together once handled)."""
    where, root = None, None
    for parser, where in _parsed(dump, progress, span):
        last = None
        for _, elem in parser.read_events():
            last = elem
            if root is None:  # the first row: the prolog and DTD are parsed by now
                if not where.doctype_checked:
                    _check_doctype(elem, where)
                    where.doctype_checked = True
                root = elem.getparent()
                if root is None:  # a lone <row> as the document (no rows to free)
                    root = elem
            kind = elem.get("PostTypeId") or "missing"
            counts[kind] = counts.get(kind, 0) + 1
            if kind == "1":
                on_question(elem)
            elif kind == "2":
                on_answer(elem)
        if last is not None and root is not None and root is not last:
            # The rows handled so far go (the tree never holds more than a chunk's rows); what follows the last
            # one may still be under construction and stays.
            if last.getparent() is root:
                del root[: root.index(last) + 1]
            else:
                last.clear()
    _check_rows(counts, span, where)


def _check_rows(counts: dict[str, int], span: tuple[int, int] | None, where: _Position | None) -> None:
    if not counts and span is None and where is not None:
        raise DataError("no <row> elements: not a Stack Exchange Posts.xml", where.label)


def _parsed(dump: DumpInput, progress: Callable[[int], None] | None,
            span: tuple[int, int] | None) -> Iterator[tuple[etree.XMLPullParser, _Position]]:
    """The pull parser after each chunk of the dump (or of ``span``) is fed, then after it is closed."""
    parser = etree.XMLPullParser(events=("end",), tag="row", resolve_entities=False, no_network=True,
                                 load_dtd=False, remove_comments=True, remove_pis=True)
    start, end = span or (0, dump.size)
    where = _Position(dump, offset=start, start=start)
    first, last = start == 0, span is None or end >= dump.path.stat().st_size
    if not first or not last:
        wrapping = range_wrapping(dump.path)
        if wrapping is None:
            raise ValueError(f"{dump.path}: its prolog is not a dump's; it cannot be read by byte range")
        open_tag, close_tag = wrapping
    if not first:
        _feed(parser, open_tag, where)
        where.doctype_checked = True  # the prolog is the first range's
        where.prefix_lines = open_tag.count(b"\n")
    for chunk in iter_chunks(dump, span):
        if where.offset == 0:
            _check_prolog(chunk, dump)
        _feed(parser, chunk, where)
        yield parser, where
        where.offset += len(chunk)
        if progress is not None:
            progress(len(chunk))
    if not last:
        _feed(parser, close_tag, where)
    _feed(parser, None, where)
    yield parser, where


@dataclass
class _Position:
    dump: DumpInput
    offset: int = 0
    doctype_checked: bool = False
    start: int = 0  # the byte range's first byte (lines of an error count from the file's start)
    prefix_lines: int = 0  # newlines in what was fed before the range's bytes

    @property
    def label(self) -> str:
        return dump_label(self.dump)

    def line(self, line_in_range: int) -> int:
        """A line number the parser gave, counted from the file's start (only computed for an error)."""
        if self.start <= 0 or not line_in_range:
            return line_in_range
        before = 0
        with self.dump.path.open("rb") as fh:
            left = self.start
            while left > 0 and (block := fh.read(min(CHUNK, left))):
                before += block.count(b"\n")
                left -= len(block)
        return before + line_in_range - self.prefix_lines


def _feed(parser: etree.XMLPullParser, chunk: bytes | None, where: _Position) -> None:
    try:
        if chunk is None:
            parser.close()
        else:
            parser.feed(chunk)
    except etree.XMLSyntaxError as exc:
        # libxml2 knows the line and column; the byte count is only where the chunk it was reading ends
        line, column = getattr(exc, "position", None) or (exc.lineno, 0)
        line = where.line(line)
        size = 0 if chunk is None else len(chunk)
        at = f"line {line}, column {column}" if line else f"the chunk ending at byte {where.offset + size}"
        raise DataError(f"malformed XML at {at}: {exc.msg or exc}", where.label, line or None) from None


def _check_prolog(head: bytes, dump: DumpInput) -> None:
    end = head.find(b"<row")
    prolog = head if end < 0 else head[:end]
    pos = prolog.find(b"<!ENTITY")
    if pos >= 0:
        raise DataError(f"the dump declares XML entities (<!ENTITY at byte {pos}); they are never expanded, "
                        "and a real Stack Exchange dump declares none", dump.path)


def _check_doctype(elem: etree._Element, where: _Position) -> None:
    """Refuse a document whose internal DTD subset declares entities, as libxml2 itself parsed it: whatever the
    encoding, padding or comments before it (the byte scan of :func:`_check_prolog` only refuses early)."""
    dtd = elem.getroottree().docinfo.internalDTD
    names = [entity.name for entity in dtd.iterentities()] if dtd is not None else []
    if names:
        raise DataError(f"the dump declares XML entities ({', '.join(sorted(names)[:5])}); they are never "
                        "expanded, and a real Stack Exchange dump declares none", where.label)


def _drain(parser: etree.XMLPullParser, counts: dict[str, int],
           where: _Position) -> Iterator[tuple[int, etree._Element]]:
    for _, elem in parser.read_events():
        if not where.doctype_checked:  # the first row: the prolog and DTD are parsed by now
            _check_doctype(elem, where)
            where.doctype_checked = True
        kind = elem.get("PostTypeId") or "missing"
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "1":
            yield QUESTION, elem
        elif kind == "2":
            yield ANSWER, elem
        # Free the row and its already-parsed siblings: the tree never grows past one row.
        elem.clear()
        parent = elem.getparent()
        if parent is not None:
            while elem.getprevious() is not None:
                del parent[0]


INT64 = 1 << 63


def _number(text: str | None) -> int:
    """An integer attribute; one outside 64 bits (no real dump has one) is as bad as a missing one."""
    value = int(text)  # type: ignore[arg-type]  # None -> TypeError, like a missing attribute
    if not -INT64 <= value < INT64:
        raise ValueError(f"{value} is outside 64 bits")
    return value


def read_question(elem: etree._Element, owners: bool = True) -> Post | str:
    """A question row as a :class:`Post`, or the reason key of a counted skip (``owners=False``: ``owner`` is
    only read where the planted-post check needs it, and is 0 elsewhere)."""
    get = elem.get
    try:
        qid = _number(get("Id"))
        owner = int(get("OwnerUserId") or 0) if owners or qid in PLANTED_POST_IDS else 0
        post = Post(id=qid, type=QUESTION, score=_number(get("Score")), body=get("Body"),
                    title=get("Title"), tags=get("Tags") or "", closed=bool(get("ClosedDate")),
                    created=get("CreationDate") or "", edited=get("LastEditDate") or "", owner=owner)
    except (TypeError, ValueError):
        return "missing_fields"
    if post.body is None or post.title is None:
        return "missing_fields"
    return "planted_post" if post.id in PLANTED_POST_IDS and post.owner == -1 else post


def read_answer(elem: etree._Element, min_score: int, owners: bool = True) -> Post | str:
    """An answer row as a :class:`Post` if it scores at least ``min_score``, else the reason key of a skip.

    The body of a low-scoring answer is never read: most answers stop here, cheaply. ``owners`` as for
    :func:`read_question`.
    """
    get = elem.get
    try:
        score = _number(get("Score"))
        if score < min_score:
            return "below_min_score"
        aid = _number(get("Id"))
        owner = int(get("OwnerUserId") or 0) if owners or aid in PLANTED_POST_IDS else 0
        post = Post(id=aid, type=ANSWER, score=score, body=get("Body"), parent=_number(get("ParentId")),
                    created=get("CreationDate") or "", edited=get("LastEditDate") or "", owner=owner)
    except (TypeError, ValueError):
        return "missing_fields"
    if post.body is None:
        return "missing_fields"
    return "planted_post" if post.id in PLANTED_POST_IDS and post.owner == -1 else post
