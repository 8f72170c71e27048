"""Streaming reader of a Stack Exchange ``Posts.xml``: from a file, a directory or a ``.7z`` archive, in constant memory.

Bytes are fed in chunks to lxml's pull parser (entity resolution, DTD loading and network access off), so no
``Posts.xml`` is ever held whole in memory and a ``.7z`` is decompressed as a stream (``py7zr`` in a thread that
hands chunks over a small bounded queue), never extracted to disk. Each ``<row>`` is turned into a small
:class:`Post` (questions and answers only; other post types are only counted) and freed at once.

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

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from lxml import etree

from lima_align.curate.filters import PLANTED_POST_IDS
from lima_align.errors import DataError
from lima_align.sources.se_sites import canonical_site, site_from_path

CHUNK = 1 << 20
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
        member, size = _find_member(p)
        return DumpInput(p, name, member, size)
    return DumpInput(p, name, size=p.stat().st_size)


def parse_tags(raw: str | None) -> tuple[str, ...]:
    """Tags from either dump encoding: ``<a><b>`` (older dumps) or ``|a|b|`` (2023 and later)."""
    if not raw:
        return ()
    sep = "|" if raw.startswith("|") else None
    parts = raw.split("|") if sep else raw.replace("<", " ").replace(">", " ").split()
    return tuple(t for t in (p.strip() for p in parts) if t)


def _find_member(archive: Path) -> tuple[str, int]:
    py7zr = _py7zr()
    try:
        with py7zr.SevenZipFile(archive, mode="r") as zf:
            infos = zf.list()
    except Exception as exc:  # py7zr raises many types (Bad7zFile, EOFError, LZMAError, ...) for bad archives
        raise DataError(f"cannot open the 7z archive: truncated or corrupt ({exc or type(exc).__name__})",
                        archive) from None
    for info in infos:
        if info.filename.replace("\\", "/").rsplit("/", 1)[-1].lower() == "posts.xml":
            return info.filename, int(info.uncompressed or 0)
    names = ", ".join(i.filename for i in infos[:10]) or "none"
    raise DataError(f"archive holds no Posts.xml (members: {names})", archive)


def _py7zr():
    try:
        import py7zr
    except ImportError:
        raise DataError("reading .7z archives needs the py7zr package: pip install py7zr") from None
    return py7zr


def iter_chunks(dump: DumpInput) -> Iterator[bytes]:
    """The Posts.xml bytes of a dump, in chunks of about 1 MiB."""
    if dump.member is None:
        with dump.path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk
    else:
        yield from _iter_7z(dump)


class _Cancelled(Exception):
    pass


def _queue_factory(py7zr, chunks: queue.Queue, cancel: threading.Event):
    """A py7zr writer factory whose writers put each decompressed chunk on ``chunks`` (blocking when full)."""

    class Writer(py7zr.Py7zIO):
        def write(self, s):
            if cancel.is_set():  # the reader stopped (error or early exit): abort the decompression
                raise _Cancelled()
            chunks.put(bytes(s))
            return len(s)

        def read(self, size=None):
            return b""

        def seek(self, offset, whence=0):
            return 0

        def flush(self):
            return None

        def size(self):
            return 0

    class Factory(py7zr.WriterFactory):
        def create(self, filename):
            return Writer()

    return Factory()


def _iter_7z(dump: DumpInput) -> Iterator[bytes]:
    """Decompress one archive member in a thread, passing chunks over a bounded queue (constant memory)."""
    py7zr = _py7zr()
    chunks: queue.Queue = queue.Queue(maxsize=8)
    cancel = threading.Event()

    def work():
        try:
            with py7zr.SevenZipFile(dump.path, mode="r") as zf:
                zf.extract(targets=[dump.member], factory=_queue_factory(py7zr, chunks, cancel))
            chunks.put(None)
        except BaseException as exc:  # handed to the reading thread, which reports it
            chunks.put(exc)

    thread = threading.Thread(target=work, name="7z-reader", daemon=True)
    thread.start()
    fed = 0
    try:
        while (item := chunks.get()) is not None:
            if isinstance(item, _Cancelled):
                return
            if isinstance(item, BaseException):
                raise DataError(f"corrupt or truncated 7z archive after {fed} bytes of {dump.member}: "
                                f"{item or type(item).__name__}", dump.path) from None
            fed += len(item)
            yield item
    finally:
        cancel.set()
        while thread.is_alive():  # unblock a writer waiting on a full queue
            try:
                chunks.get(timeout=0.05)
            except queue.Empty:
                pass


def iter_rows(dump: DumpInput, counts: dict[str, int],
              progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, etree._Element]]:
    """``(post type, row element)`` for each question and answer row of a dump, in file order.

    The element is valid only until the next row is read (it is cleared then: the tree never grows past one
    row), so read it with :func:`read_question` / :func:`read_answer` at once. ``counts`` receives the rows
    read per post type (``"1"``, ``"2"``, ``"4"``...).
    """
    parser = etree.XMLPullParser(events=("end",), tag="row", resolve_entities=False, no_network=True,
                                 load_dtd=False, remove_comments=True, remove_pis=True)
    where = _Position(dump)
    for chunk in iter_chunks(dump):
        if where.offset == 0:
            _check_prolog(chunk, dump)
        _feed(parser, chunk, where)
        yield from _drain(parser, counts, where)
        where.offset += len(chunk)
        if progress is not None:
            progress(len(chunk))
    _feed(parser, None, where)
    yield from _drain(parser, counts, where)
    if not counts:
        raise DataError("no <row> elements: not a Stack Exchange Posts.xml", where.label)


@dataclass
class _Position:
    dump: DumpInput
    offset: int = 0
    doctype_checked: bool = False

    @property
    def label(self) -> str:
        d = self.dump
        return f"{d.path}:{d.member}" if d.member else str(d.path)


def _feed(parser: etree.XMLPullParser, chunk: bytes | None, where: _Position) -> None:
    try:
        if chunk is None:
            parser.close()
        else:
            parser.feed(chunk)
    except etree.XMLSyntaxError as exc:
        # libxml2 knows the line and column; the byte count is only where the chunk it was reading ends
        line, column = getattr(exc, "position", None) or (exc.lineno, 0)
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


def read_question(elem: etree._Element) -> Post | str:
    """A question row as a :class:`Post`, or the reason key of a counted skip."""
    get = elem.get
    try:
        post = Post(id=int(get("Id")), type=QUESTION, score=int(get("Score")), body=get("Body"),
                    title=get("Title"), tags=get("Tags") or "", closed=bool(get("ClosedDate")),
                    created=get("CreationDate") or "", edited=get("LastEditDate") or "",
                    owner=int(get("OwnerUserId") or 0))
    except (TypeError, ValueError):
        return "missing_fields"
    if post.body is None or post.title is None:
        return "missing_fields"
    return "planted_post" if post.id in PLANTED_POST_IDS and post.owner == -1 else post


def read_answer(elem: etree._Element, min_score: int) -> Post | str:
    """An answer row as a :class:`Post` if it scores at least ``min_score``, else the reason key of a skip.

    The body of a low-scoring answer is never read: most answers stop here, cheaply.
    """
    get = elem.get
    try:
        score = int(get("Score"))
        if score < min_score:
            return "below_min_score"
        post = Post(id=int(get("Id")), type=ANSWER, score=score, body=get("Body"), parent=int(get("ParentId")),
                    created=get("CreationDate") or "", edited=get("LastEditDate") or "",
                    owner=int(get("OwnerUserId") or 0))
    except (TypeError, ValueError):
        return "missing_fields"
    if post.body is None:
        return "missing_fields"
    return "planted_post" if post.id in PLANTED_POST_IDS and post.owner == -1 else post
