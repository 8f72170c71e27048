"""A persistent cache of judge calls in SQLite, keyed by a stable hash of what determines the reply.

Each ``put`` is its own committed transaction (WAL journal), so a run killed at any point leaves every finished
call in the cache and no half-written entry: a re-run makes no repeated calls. Failed calls (no reply after the
retries) are not cached, so a re-run tries them again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any


def cache_key(judge_model: str, template_version: str, messages: list[dict[str, str]],
              params: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of (judge model, template version, messages, sampling params)."""
    canonical = json.dumps({"judge": judge_model, "template": template_version, "messages": messages,
                            "params": params}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class JudgeCache:
    """``get(key) -> dict | None`` and ``put(key, value)``; values are JSON objects (the reply and its usage)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=60)
        self._wal()
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
                         "created REAL NOT NULL)")

    def _wal(self) -> None:
        """Switch to WAL; processes opening a new cache at once (parallel ablation arms) can find it locked, and
        SQLite does not wait on its busy timeout for a journal-mode change, so retry for a while."""
        for attempt in range(200):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 199:
                    raise
                time.sleep(0.05)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, value: dict[str, Any]) -> None:
        text = json.dumps(value, ensure_ascii=False)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO calls (key, value, created) VALUES (?, ?, ?)",
                             (key, text, time.time()))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class NoCache:
    """The cache turned off (``--no-cache``): every call goes to the judge."""

    def get(self, key: str) -> dict[str, Any] | None:
        return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass
