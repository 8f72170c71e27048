"""Reading a ``Posts.xml`` member out of a ``.7z`` archive as a stream of chunks, never extracting it to disk.

Through 7-Zip (``7zz`` / ``7z`` on PATH, ``x -so``: its own LZMA decoder, in its own process beside the parser)
when there is one, else ``py7zr`` in a thread that hands chunks over a small bounded queue. ``LIMA_7Z=py7zr``
forces py7zr, ``LIMA_7Z=/path/to/7zz`` names the tool. A truncated or corrupt archive is a
:class:`~lima_align.errors.DataError` naming the file.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from lima_align.errors import DataError

CHUNK = 1 << 20


def iter_member(path: Path, member: str) -> Iterator[bytes]:
    """The bytes of one archive member, in chunks of about 1 MiB."""
    tool = seven_zip_tool()
    if tool is not None:
        yield from _iter_7zz(tool, path, member)
    else:
        yield from _iter_7z(path, member)


def seven_zip_tool() -> str | None:
    """The ``7zz`` / ``7z`` executable that streams ``.7z`` members, or None to use py7zr (``LIMA_7Z``)."""
    choice = os.environ.get("LIMA_7Z", "").strip()
    if choice.lower() == "py7zr":
        return None
    if choice:
        tool = shutil.which(choice)
        if tool is None:
            raise DataError(f"LIMA_7Z={choice!r} is not an executable on PATH (use 7zz, 7z, or py7zr)")
        return tool
    return shutil.which("7zz") or shutil.which("7z")


def find_member(archive: Path) -> tuple[str, int]:
    tool = seven_zip_tool()
    if tool is not None:
        return _find_member_7zz(tool, archive)
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


def _find_member_7zz(tool: str, archive: Path) -> tuple[str, int]:
    """The Posts.xml member of an archive and its size, from ``7zz l -slt`` (technical listing)."""
    run = subprocess.run([tool, "l", "-slt", "-ba", "--", str(archive)], capture_output=True)
    if run.returncode != 0:
        raise DataError(f"cannot open the 7z archive: truncated or corrupt ({_tool_error(run.stderr, run.stdout)})",
                        archive)
    names = []
    for block in run.stdout.decode("utf-8", "replace").split("\n\n"):
        fields = dict(line.split(" = ", 1) for line in block.splitlines() if " = " in line)
        if "Path" not in fields or fields.get("Folder") == "+":
            continue
        names.append(fields["Path"])
        if fields["Path"].replace("\\", "/").rsplit("/", 1)[-1].lower() == "posts.xml":
            return fields["Path"], int(fields.get("Size") or 0)
    raise DataError(f"archive holds no Posts.xml (members: {', '.join(names[:10]) or 'none'})", archive)


def _tool_error(*outputs: bytes) -> str:
    """The error lines 7-Zip printed (it writes some to stdout), in one line."""
    lines = [ln.strip() for out in outputs for ln in out.decode("utf-8", "replace").splitlines()]
    picked = [ln for ln in lines if ln and (ln.startswith(("ERROR", "Error", "E_", "Can not", "Cannot"))
                                            or "rror" in ln or "Unexpected" in ln or "Headers" in ln)]
    return "; ".join(picked[:4]) or "; ".join(ln for ln in lines if ln)[-300:] or "7-Zip failed"


def _py7zr():
    try:
        import py7zr
    except ImportError:
        raise DataError("reading .7z archives needs the py7zr package: pip install py7zr") from None
    return py7zr


def _iter_7zz(tool: str, path: Path, member: str) -> Iterator[bytes]:
    """Stream one member through 7-Zip's ``x -so`` (decompression runs in that process, beside the parser)."""
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: 7-Zip can never block on what it reports
        proc = subprocess.Popen([tool, "x", "-so", "-spd", "-bd", "--", str(path), member],
                                stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL)
        fed, done = 0, False
        try:
            assert proc.stdout is not None
            while chunk := proc.stdout.read(CHUNK):
                fed += len(chunk)
                yield chunk
            done = True
        finally:
            if not done:  # the reader stopped early (error or early exit): stop the decompression
                proc.kill()
            proc.stdout.close()  # type: ignore[union-attr]
            proc.wait()
        if proc.returncode != 0:
            errors.seek(0)
            raise DataError(f"corrupt or truncated 7z archive after {fed} bytes of {member}: "
                            f"{_tool_error(errors.read())}", path)


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


def _iter_7z(path: Path, member: str) -> Iterator[bytes]:
    """Decompress one archive member in a thread, passing chunks over a bounded queue (constant memory)."""
    py7zr = _py7zr()
    chunks: queue.Queue = queue.Queue(maxsize=8)
    cancel = threading.Event()

    def work():
        try:
            with py7zr.SevenZipFile(path, mode="r") as zf:
                zf.extract(targets=[member], factory=_queue_factory(py7zr, chunks, cancel))
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
                raise DataError(f"corrupt or truncated 7z archive after {fed} bytes of {member}: "
                                f"{item or type(item).__name__}", path) from None
            fed += len(item)
            yield item
    finally:
        cancel.set()
        while thread.is_alive():  # unblock a writer waiting on a full queue
            try:
                chunks.get(timeout=0.05)
            except queue.Empty:
                pass
