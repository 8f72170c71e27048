"""Resumable stages for the long jobs (``lima-align run``, ``demo``, ``ablate``).

A stage is a function that writes files into a run folder and returns a small JSON-able summary. When it finishes,
``<run>/stages/<name>.json`` records that summary and the stage's *key*: a hash of everything the stage depends on
(its settings, the content of its input files, and the keys of the stages it reads from, so a change upstream
re-runs everything below it). On a re-run:

* same key, outputs present: the stage is skipped and its recorded summary returned;
* no marker but a ``<name>.started.json`` with the same key: the stage was interrupted; it runs again and resumes
  on its own (training from its last complete checkpoint, generation and judging row by row);
* a different key (settings or inputs changed): the stage's outputs are deleted and it runs from scratch.

Stages without a key (``key=None``) only use the marker: they run once.

File content is hashed with SHA-256; files over :data:`FULL_HASH_LIMIT` (multi-GB dumps) are identified by size,
modification time and a hash of their first and last MiB instead, so that checking a 100 GB dump costs
milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from lima_align.errors import LimaError
from lima_align.fileio import file_digest, fingerprint, write_json  # noqa: F401  (fingerprint: this module's API)

Log = Callable[[str], None]
def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


class Stages:
    """Completion markers (and keys) in ``<out>/stages``; see the module docstring. The only code that reads or
    writes those markers: drivers ask it for :meth:`status` and :meth:`forget` instead of opening them."""

    def __init__(self, out: Path, log: Log = print, total: int = 0):
        self.dir = Path(out) / "stages"
        self.log = log
        self.total = total  # stages of the whole job, for the "[i/N]" tags (0: count only)
        self.count = 0
        cache = self.dir / "digests.json"
        self.digests: dict[str, str] = json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else {}

    def _paths(self, name: str) -> tuple[Path, Path]:
        return self.dir / f"{name}.json", self.dir / f"{name}.started.json"

    def digest(self, path: str | Path) -> str:
        """:func:`file_digest` with this run folder's cache of digests (saved at once)."""
        before = len(self.digests)
        digest = file_digest(path, self.digests)
        if len(self.digests) != before:
            write_json(self.dir / "digests.json", self.digests)
        return digest

    def status(self, names: Sequence[str]) -> list[tuple[str, str]]:
        """``(stage, state)`` without running anything: "done in N s: summary", "interrupted (a run resumes it)"
        or "not run". A changed config may still redo a done stage (its key is checked when it runs)."""
        rows = []
        for name in names:
            marker, started = self._paths(name)
            if marker.is_file():
                info = json.loads(marker.read_text(encoding="utf-8"))
                rows.append((name, f"done in {info.get('seconds', '?')} s: {info.get('summary', '')}"))
            else:
                rows.append((name, "interrupted (a run resumes it)" if started.is_file() else "not run"))
        return rows

    def forget(self, names: Sequence[str]) -> None:
        """Drop these stages' markers so that they run again (their outputs are then redone from scratch)."""
        for name in names:
            for path in self._paths(name):
                path.unlink(missing_ok=True)

    def run(self, name: str, fn: Callable[[], dict[str, Any]], *, key: Any = None,
            outputs: Sequence[Path] = (), protect: str | None = None) -> dict[str, Any]:
        """Run ``fn`` unless an earlier run finished it with the same key; returns its summary (with ``key``).

        ``protect``: when the key changed and the stage's outputs exist, refuse (with this hint) instead of
        deleting them: for outputs that cost hours, such as trained checkpoints.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        self.count += 1
        tag = f"[{self.count}/{self.total}] {name}" if self.total else f"[{self.count}] {name}"
        marker, started = self._paths(name)
        want = None if key is None else fingerprint(key)
        done = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else None
        if done is not None and done.get("key") == want and all(Path(p).exists() for p in outputs):
            self.log(f"{tag}: done in an earlier run, skipped ({marker})")
            return done
        begun = json.loads(started.read_text(encoding="utf-8")) if started.is_file() else None
        if done is not None or (begun is not None and begun.get("key") != want):
            changed = (done or begun or {}).get("key") != want
            if changed and protect and any(Path(p).exists() for p in outputs):
                before, now = (done or begun or {}).get("inputs") or {}, _flat(key) or {}
                what = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
                raise LimaError(f"{name}: its settings or inputs changed since it ran ({', '.join(what) or '?'}); "
                                f"{protect}")
            why = "settings or inputs changed" if changed else "outputs missing"
            self.log(f"{tag}: {why} since the last run: starting it again from scratch")
            for path in outputs:
                _remove(Path(path))
            marker.unlink(missing_ok=True)
        elif started.is_file():
            self.log(f"{tag}: interrupted earlier, resuming ...")
        else:
            self.log(f"{tag} ...")
        inputs = _flat(key) if protect else None
        write_json(started, {"key": want, "inputs": inputs, "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
        begin = time.perf_counter()
        info = fn()
        info["seconds"] = round(time.perf_counter() - begin, 1)
        info["key"] = want
        if inputs is not None:
            info["inputs"] = inputs
        write_json(marker, info)
        os.unlink(started)
        self.log(f"{tag}: {info['seconds']} s - {info.get('summary', '')}")
        return info


def _flat(key: Any) -> dict[str, Any] | None:
    """A key as ``{dotted.name: value}`` (to name what changed), or None when it is not a mapping."""
    if not isinstance(key, dict):
        return None
    out: dict[str, Any] = {}
    for k, v in key.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in (_flat(v) or {}).items()})
        else:
            out[str(k)] = json.loads(json.dumps(v, default=str))
    return out
