"""The annotation store: one SQLite file in WAL mode holding studies, items, annotators, assignments and labels.

Every label is committed (``synchronous=FULL``) before the request that wrote it is answered, so a label the
UI saw acknowledged survives a killed server. Tokens are stored as SHA-256 hashes only; the plain token is
printed once when it is created. A label is one row per (annotator, item), replaced on change (``revision``
counts the changes), which is what makes "change until the study is closed" free of duplicates.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
  id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, kind TEXT NOT NULL, config TEXT NOT NULL,
  closed INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
  id INTEGER PRIMARY KEY, study_id INTEGER NOT NULL REFERENCES studies(id), idx INTEGER NOT NULL,
  shared INTEGER NOT NULL, payload TEXT NOT NULL, UNIQUE (study_id, idx));
CREATE TABLE IF NOT EXISTS annotators (
  id INTEGER PRIMARY KEY, study_id INTEGER NOT NULL REFERENCES studies(id), name TEXT NOT NULL,
  token_sha256 TEXT UNIQUE NOT NULL, created_at TEXT NOT NULL, UNIQUE (study_id, name));
CREATE TABLE IF NOT EXISTS assignments (
  annotator_id INTEGER NOT NULL REFERENCES annotators(id), item_id INTEGER NOT NULL REFERENCES items(id),
  pos INTEGER NOT NULL, swap INTEGER NOT NULL, PRIMARY KEY (annotator_id, item_id));
CREATE TABLE IF NOT EXISTS labels (
  annotator_id INTEGER NOT NULL, item_id INTEGER NOT NULL, label TEXT NOT NULL, revision INTEGER NOT NULL,
  updated_at TEXT NOT NULL, PRIMARY KEY (annotator_id, item_id),
  FOREIGN KEY (annotator_id, item_id) REFERENCES assignments(annotator_id, item_id));
"""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(24)


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection in WAL mode with full fsync on commit; creates the schema if missing."""
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # an acknowledged label must survive a crash, not just a kill
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.executescript(SCHEMA)
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT (rolled back on error): writers queue on the lock instead of failing."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# ------------------------------------------------------------------------------------------------ admin
def ensure_admin_token(conn: sqlite3.Connection) -> str | None:
    """Create the study owner's admin token if the store has none; returns it (once), else None."""
    row = conn.execute("SELECT value FROM meta WHERE key='admin_token_sha256'").fetchone()
    if row is not None:
        return None
    token = new_token()
    conn.execute("INSERT INTO meta VALUES ('admin_token_sha256', ?)", (hash_token(token),))
    return token


def is_admin(conn: sqlite3.Connection, token: str) -> bool:
    row = conn.execute("SELECT value FROM meta WHERE key='admin_token_sha256'").fetchone()
    return row is not None and secrets.compare_digest(row["value"], hash_token(token))


# ------------------------------------------------------------------------------------------------ reads
def study(conn: sqlite3.Connection, name: str | None = None, study_id: int | None = None) -> sqlite3.Row | None:
    if study_id is not None:
        return conn.execute("SELECT * FROM studies WHERE id=?", (study_id,)).fetchone()
    if name is None:
        rows = conn.execute("SELECT * FROM studies ORDER BY id").fetchall()
        return rows[0] if len(rows) == 1 else None
    return conn.execute("SELECT * FROM studies WHERE name=?", (name,)).fetchone()


def studies(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM studies ORDER BY id").fetchall()


def annotator_by_token(conn: sqlite3.Connection, token: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM annotators WHERE token_sha256=?", (hash_token(token),)).fetchone()


def annotators(conn: sqlite3.Connection, study_id: int) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM annotators WHERE study_id=? ORDER BY id", (study_id,)).fetchall()


def queue(conn: sqlite3.Connection, annotator_id: int) -> list[sqlite3.Row]:
    """An annotator's items in their order, each with its recorded swap and current label (or NULL)."""
    return conn.execute(
        "SELECT i.id AS item_id, i.idx, i.shared, i.payload, a.pos, a.swap, l.label, l.revision, l.updated_at "
        "FROM assignments a JOIN items i ON i.id=a.item_id "
        "LEFT JOIN labels l ON l.annotator_id=a.annotator_id AND l.item_id=a.item_id "
        "WHERE a.annotator_id=? ORDER BY a.pos", (annotator_id,)).fetchall()


def assignment(conn: sqlite3.Connection, annotator_id: int, item_id: int) -> sqlite3.Row | None:
    rows = [r for r in queue(conn, annotator_id) if r["item_id"] == item_id]
    return rows[0] if rows else None


def item_exists(conn: sqlite3.Connection, item_id: int) -> bool:
    return conn.execute("SELECT 1 FROM items WHERE id=?", (item_id,)).fetchone() is not None


def progress(conn: sqlite3.Connection, annotator_id: int) -> tuple[int, int]:
    """(labelled, assigned) of one annotator."""
    row = conn.execute(
        "SELECT COUNT(*) AS n, COUNT(l.label) AS done FROM assignments a LEFT JOIN labels l "
        "ON l.annotator_id=a.annotator_id AND l.item_id=a.item_id WHERE a.annotator_id=?", (annotator_id,)).fetchone()
    return int(row["done"]), int(row["n"])


def all_labels(conn: sqlite3.Connection, study_id: int) -> list[sqlite3.Row]:
    """Every label of a study with its annotator, item and recorded position swap, in a stable order."""
    return conn.execute(
        "SELECT n.name AS annotator, i.id AS item_id, i.idx, i.shared, i.payload, a.swap, l.label, l.revision, "
        "l.updated_at FROM labels l JOIN annotators n ON n.id=l.annotator_id JOIN items i ON i.id=l.item_id "
        "JOIN assignments a ON a.annotator_id=l.annotator_id AND a.item_id=l.item_id "
        "WHERE i.study_id=? ORDER BY n.name, i.idx", (study_id,)).fetchall()


# ----------------------------------------------------------------------------------------------- writes
def save_label(conn: sqlite3.Connection, annotator_id: int, item_id: int, label: Any) -> int:
    """Insert or replace one label (committed when this returns); returns its revision."""
    with transaction(conn):
        conn.execute(
            "INSERT INTO labels VALUES (?, ?, ?, 1, ?) ON CONFLICT (annotator_id, item_id) DO UPDATE SET "
            "label=excluded.label, revision=labels.revision + 1, updated_at=excluded.updated_at",
            (annotator_id, item_id, json.dumps(label, ensure_ascii=False), now()))
        row = conn.execute("SELECT revision FROM labels WHERE annotator_id=? AND item_id=?",
                           (annotator_id, item_id)).fetchone()
    return int(row["revision"])


def set_closed(conn: sqlite3.Connection, study_id: int, closed: bool) -> None:
    with transaction(conn):
        conn.execute("UPDATE studies SET closed=? WHERE id=?", (int(closed), study_id))
