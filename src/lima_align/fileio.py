"""File plumbing every stage uses: streaming JSON/JSONL records with line numbers, atomic writes.

Records come back as ``(line, object)`` so that a bad record can be named by its line. Writes go to a
temporary file beside the target and are renamed into place, so an interrupted job never leaves half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from lima_align.errors import DataError

OnError = Callable[[DataError], None]

_DECODER = json.JSONDecoder()


def open_checked(path: str | Path) -> Path:
    """Return ``path`` as a Path if it is a readable file, else a DataError naming it."""
    p = Path(path)
    if not p.exists():
        raise DataError("no such file or directory", p)
    if p.is_dir():
        raise DataError("is a directory, expected a file", p)
    return p


def _decode(raw: bytes, path: Path, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"invalid UTF-8 at byte {exc.start} of the line", path, line) from None


def iter_jsonl(path: str | Path, on_error: OnError | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file, streaming.

    A malformed line raises a DataError naming it, or, when ``on_error`` is given, is passed to it and skipped.
    """
    p = open_checked(path)
    with p.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                text = _decode(raw, p, line_no)
                if line_no == 1:
                    text = text.lstrip("\ufeff")
                if not text.strip():
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise DataError(f"malformed JSON: {exc.msg} (column {exc.colno})", p, line_no) from None
            except DataError as exc:
                if on_error is None:
                    raise
                on_error(exc)
                continue
            yield line_no, obj


def read_text(path: str | Path) -> str:
    """Read a whole UTF-8 text file, naming the line of any invalid byte."""
    p = open_checked(path)
    data = p.read_bytes()
    try:
        return data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError("invalid UTF-8", p, line) from None


def iter_json_array(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for each element of a top-level JSON array.

    Elements are decoded one at a time so each is named by the line it starts on.
    """
    p = Path(path)
    text = read_text(p)
    pos = _skip_ws(text, 0)
    if pos >= len(text) or text[pos] != "[":
        raise DataError("expected a JSON array ('[' ...)", p, text.count("\n", 0, pos) + 1)
    pos = _skip_ws(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        line = text.count("\n", 0, pos) + 1
        try:
            obj, pos = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataError(f"malformed JSON: {exc.msg} (column {exc.colno})", p, exc.lineno) from None
        yield line, obj
        pos = _skip_ws(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            return
        raise DataError("malformed JSON array: expected ',' or ']'", p, text.count("\n", 0, pos) + 1)


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def sniff_json_container(path: str | Path) -> str:
    """'array' if the file's first non-blank character is '[', else 'jsonl'."""
    p = open_checked(path)
    with p.open("rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf").lstrip()
    return "array" if head[:1] == b"[" else "jsonl"


def iter_json_records(path: str | Path, on_error: OnError | None = None) -> Iterator[tuple[int, Any]]:
    """Records of a JSON array file or a JSONL file, whichever it is.

    ``on_error`` skips malformed JSONL lines (see :func:`iter_jsonl`); a malformed array cannot be resynchronised
    and always raises.
    """
    if sniff_json_container(path) == "array":
        return iter_json_array(path)
    return iter_jsonl(path, on_error)


@contextlib.contextmanager
def exclusive(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``.<name>.lock`` beside ``path`` for the block: other processes (and threads)
    that ask for it wait, so one writes ``path`` at a time."""
    import fcntl

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | Path, records: Iterable[Any]) -> int:
    """Write records as JSONL atomically; returns how many were written."""
    n = 0
    with atomic_write(path) as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_json(path: str | Path, obj: Any) -> None:
    """Write one JSON document atomically (indented, UTF-8)."""
    with atomic_write(path) as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=2)
        fh.write("\n")


def read_appended(path: str | Path, key: Callable[[dict], Any],
                  what: str) -> tuple[list[tuple[bytes, Any, dict]], int]:
    """The rows of an append-only JSONL output (a resumable job's), as ``(raw line, key(row), row)``.

    A torn last line (the job was killed mid-write) ends the rows and is counted; a complete line that is not
    such a row (``key`` fails on it) is an error naming it: never append to a file that is not ours.
    """
    p = Path(path)
    rows: list[tuple[bytes, Any, dict]] = []
    with p.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                row = json.loads(raw)
                rows.append((raw, key(row), row))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                if raw.endswith(b"\n"):
                    raise DataError(f"not a {what}; refusing to append to this file", p, line_no) from None
                return rows, 1
    return rows, 0


def keep_lines(path: str | Path, lines: list[bytes]) -> None:
    """Rewrite ``path`` (atomically) to exactly ``lines`` if it holds anything else."""
    if sum(map(len, lines)) != Path(path).stat().st_size:
        with atomic_write(path, "wb") as fh:
            fh.writelines(lines)


# ------------------------------------------------------------------ content identities (stage keys, caches)
FULL_HASH_LIMIT = 256 * 1024 * 1024
_EDGE = 1024 * 1024


def fingerprint(value: Any) -> str:
    """A short stable hash of a JSON-able value (dict key order does not matter)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: str | Path, cache: dict[str, str] | None = None) -> str:
    """Content identity of a file or folder (recursively; names and contents); missing paths are an identity too.

    ``cache`` maps ``path:size:mtime`` to a digest already computed (so that a re-run does not read every file of
    a dump folder again); new digests are added to it.
    """
    p = Path(path)
    if p.is_dir():
        h = hashlib.sha256()
        for child in sorted(p.rglob("*")):
            if child.is_file():
                h.update(f"{child.relative_to(p).as_posix()}\0{file_digest(child, cache)}\n".encode())
        return "dir:" + h.hexdigest()[:16]
    if not p.is_file():
        return "missing"
    stat = p.stat()
    memo = f"{p.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    if cache is not None and memo in cache:
        return cache[memo]
    digest = _digest(p, stat.st_size, stat.st_mtime_ns)
    if cache is not None:
        cache[memo] = digest
    return digest


def _digest(p: Path, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with p.open("rb") as fh:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: fh.read(_EDGE), b""):
                h.update(block)
            return "sha256:" + h.hexdigest()[:16]
        h.update(fh.read(_EDGE))
        fh.seek(size - _EDGE)
        h.update(fh.read(_EDGE))
    return f"large:{size}:{mtime_ns}:{h.hexdigest()[:16]}"
