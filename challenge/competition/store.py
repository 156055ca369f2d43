"""The competition's state in one SQLite file: submissions, their results per phase, events.

SQLite because a competition is one organizer's machine (or a shared disk) and the store must
survive kill -9 at any instruction: every change is one transaction, WAL mode lets the leaderboard
read while workers write, and `BEGIN IMMEDIATE` takes the write lock up front so that two workers
can never both see a submission as free. A worker holds a submission through a lease that its
heartbeat extends; a worker that dies stops renewing it, and the submission becomes claimable again.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from challenge.errors import ChallengeError

STATUSES = ("queued", "running", "scored", "failed")

# Append only: a database at version k runs migrations k+1.. once, in order, each in its own transaction.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE submissions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            team TEXT NOT NULL,
            filename TEXT NOT NULL,
            sha256 TEXT NOT NULL UNIQUE,
            content BLOB NOT NULL,
            submitted_at REAL NOT NULL,
            status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'scored', 'failed')),
            worker TEXT,
            lease_until REAL,
            attempts INTEGER NOT NULL DEFAULT 0,
            finished_at REAL,
            verdict TEXT,
            message TEXT,
            CHECK ((status = 'running') = (lease_until IS NOT NULL))
        )""",
        "CREATE INDEX submissions_by_status ON submissions (status, id)",
        "CREATE INDEX submissions_by_team ON submissions (team, submitted_at)",
        """CREATE TABLE results (
            submission_id INTEGER NOT NULL REFERENCES submissions (id),
            phase TEXT NOT NULL,
            status TEXT NOT NULL,
            final_score REAL,
            result TEXT NOT NULL CHECK (json_valid(result)),
            PRIMARY KEY (submission_id, phase)
        )""",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
        )""",
    ),
)


@dataclass(frozen=True)
class Submission:
    """One row of `submissions`, without the file's bytes (read them with Store.content)."""

    id: int
    team: str
    filename: str
    sha256: str
    submitted_at: float
    status: str
    worker: str | None
    lease_until: float | None
    attempts: int
    finished_at: float | None
    verdict: str | None
    message: str | None


_COLUMNS = ", ".join(Submission.__dataclass_fields__)


def connect(path: Path, timeout: float = 60.0) -> sqlite3.Connection:
    """Autocommit mode: every write goes through `transaction`, so nothing commits by accident."""
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE: the write lock is taken before the first read, so check-then-write is atomic."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection, migrations: Sequence[Sequence[str]] = MIGRATIONS) -> int:
    """Bring the schema to len(migrations); safe when several processes open a new file at once."""
    for version in range(1, len(migrations) + 1):
        with transaction(conn):
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current > len(migrations):
                raise ChallengeError(f"the competition database has schema version {current}, newer than this kit's {len(migrations)}: upgrade the kit")
            if current >= version:
                continue
            for statement in migrations[version - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
    return conn.execute("PRAGMA user_version").fetchone()[0]


def worker_id() -> str:
    """Host and pid say whose claim it is; the random part keeps two workers in one process apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Store:
    """The competition database. One instance per thread (sqlite3 connections are not shared)."""

    def __init__(self, path: Path, create: bool = False, timeout: float = 60.0):
        path = Path(path)
        if not create and not path.is_file():
            raise ChallengeError(f"no competition database at {path}: run `challenge competition init` (with the same competition=... and overrides) first")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = connect(path, timeout)
        self.version = migrate(self.conn)

    def close(self) -> None:
        self.conn.close()

    # -- submitting -------------------------------------------------------------------------------
    def add(self, team: str, filename: str, content: bytes, sha256: str, now: float, check: Callable[["Store", str, str, float], None]) -> int:
        """Insert a queued submission; `check(store, team, sha256, now)` runs inside the same
        transaction, so a refusal (ChallengeError) leaves nothing behind and two concurrent
        submissions cannot both slip under a quota."""
        with transaction(self.conn):
            check(self, team, sha256, now)
            cur = self.conn.execute(
                "INSERT INTO submissions (team, filename, sha256, content, submitted_at) VALUES (?, ?, ?, ?, ?)",
                (team, filename, sha256, content, now),
            )
        return int(cur.lastrowid)

    def find_sha256(self, sha256: str) -> Submission | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM submissions WHERE sha256 = ?", (sha256,)).fetchone()
        return Submission(*row) if row else None

    def count_since(self, team: str, since: float) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM submissions WHERE team = ? AND submitted_at >= ?", (team, since)).fetchone()[0]

    # -- the queue ----------------------------------------------------------------------------------
    def claim(self, worker: str, lease_seconds: float, max_attempts: int, now: float | None = None) -> Submission | None:
        """The oldest queued submission, or one whose worker stopped renewing its lease.

        A submission that has already cost `max_attempts` workers their lives is failed instead of
        handed out again, so that one file cannot stall the queue forever.
        """
        now = time.time() if now is None else now
        with transaction(self.conn):
            while True:
                row = self.conn.execute(
                    f"SELECT {_COLUMNS} FROM submissions WHERE status = 'queued' OR (status = 'running' AND lease_until < ?) ORDER BY id LIMIT 1",
                    (now,),
                ).fetchone()
                if row is None:
                    return None
                sub = Submission(*row)
                if sub.attempts < max_attempts:
                    break
                message = f"scoring was interrupted {sub.attempts} times (the worker stopped or died each time); not retried"
                self._set_final(sub.id, "failed", "interrupted", message, now)
            self.conn.execute(
                "UPDATE submissions SET status = 'running', worker = ?, lease_until = ?, attempts = attempts + 1 WHERE id = ?",
                (worker, now + lease_seconds, sub.id),
            )
        return self.get(sub.id)

    def renew(self, submission_id: int, worker: str, lease_seconds: float) -> bool:
        """False when the lease was lost (expired and taken over): the caller must not store a result."""
        with transaction(self.conn):
            cur = self.conn.execute(
                "UPDATE submissions SET lease_until = ? WHERE id = ? AND worker = ? AND status = 'running'",
                (time.time() + lease_seconds, submission_id, worker),
            )
        return cur.rowcount == 1

    def finish(self, submission_id: int, worker: str, status: str, verdict: str, message: str, results: dict[str, dict[str, Any]]) -> bool:
        """Verdict and every phase's result in one transaction, only while this worker holds the lease."""
        with transaction(self.conn):
            owner = self.conn.execute("SELECT worker, status FROM submissions WHERE id = ?", (submission_id,)).fetchone()
            if owner != (worker, "running"):
                return False
            self.conn.execute("DELETE FROM results WHERE submission_id = ?", (submission_id,))
            for phase, result in results.items():
                score = (result.get("score") or {}).get("final_score")
                self.conn.execute(
                    "INSERT INTO results (submission_id, phase, status, final_score, result) VALUES (?, ?, ?, ?, ?)",
                    (submission_id, phase, result["status"], score, json.dumps(result)),
                )
            self._set_final(submission_id, status, verdict, message, time.time())
        return True

    def release(self, submission_id: int, worker: str) -> None:
        """Give a claim back untouched (the scorer itself failed): it is queued again at once."""
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE submissions SET status = 'queued', worker = NULL, lease_until = NULL WHERE id = ? AND worker = ? AND status = 'running'",
                (submission_id, worker),
            )

    def _set_final(self, submission_id: int, status: str, verdict: str, message: str, now: float) -> None:
        self.conn.execute(
            "UPDATE submissions SET status = ?, verdict = ?, message = ?, finished_at = ?, lease_until = NULL WHERE id = ?",
            (status, verdict, message, now, submission_id),
        )

    # -- reading ------------------------------------------------------------------------------------
    def get(self, submission_id: int) -> Submission:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM submissions WHERE id = ?", (submission_id,)).fetchone()
        if row is None:
            raise ChallengeError(f"no submission {submission_id} in {self.path}")
        return Submission(*row)

    def content(self, submission_id: int) -> bytes:
        return self.conn.execute("SELECT content FROM submissions WHERE id = ?", (submission_id,)).fetchone()[0]

    def submissions(self) -> list[Submission]:
        return [Submission(*r) for r in self.conn.execute(f"SELECT {_COLUMNS} FROM submissions ORDER BY id")]

    def results(self, phase: str) -> dict[int, dict[str, Any]]:
        """submission id -> the full result of that phase, as the scorer wrote it."""
        rows = self.conn.execute("SELECT submission_id, result FROM results WHERE phase = ?", (phase,))
        return {sid: json.loads(text) for sid, text in rows}

    def counts(self) -> dict[str, int]:
        found = dict(self.conn.execute("SELECT status, COUNT(*) FROM submissions GROUP BY status").fetchall())
        return {s: found.get(s, 0) for s in STATUSES}

    # -- events ---------------------------------------------------------------------------------------
    def record(self, kind: str, detail: dict[str, Any]) -> None:
        with transaction(self.conn):
            self.conn.execute("INSERT INTO events (at, kind, detail) VALUES (?, ?, ?)", (time.time(), kind, json.dumps(detail)))

    def finalize(self) -> float:
        """Record the finalization, refused while submissions wait: every one must count or fail."""
        with transaction(self.conn):
            pending = self.conn.execute("SELECT COUNT(*) FROM submissions WHERE status IN ('queued', 'running')").fetchone()[0]
            if pending:
                raise ChallengeError(f"{pending} submission(s) are still queued or running: let `challenge worker` finish them, then finalize")
            now = time.time()
            self.conn.execute("INSERT INTO events (at, kind, detail) VALUES (?, 'finalize', '{}')", (now,))
        return now

    def last_event(self, kind: str) -> tuple[float, dict[str, Any]] | None:
        row = self.conn.execute("SELECT at, detail FROM events WHERE kind = ? ORDER BY id DESC LIMIT 1", (kind,)).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def integrity_check(self) -> str:
        """'ok', or SQLite's own list of problems; foreign keys are checked too."""
        problems = [r[0] for r in self.conn.execute("PRAGMA integrity_check")]
        problems += [f"dangling reference in {r[0]} row {r[1]}" for r in self.conn.execute("PRAGMA foreign_key_check")]
        return "ok" if problems == ["ok"] else "; ".join(p for p in problems if p != "ok")


class Heartbeat:
    """Renews a lease from a thread with its own connection while the scorer works on the main one."""

    def __init__(self, path: Path, submission_id: int, worker: str, lease_seconds: float):
        self.path, self.id, self.worker, self.lease = path, submission_id, worker, lease_seconds
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        store = Store(self.path)
        try:
            while not self._stop.wait(self.lease / 3):
                try:
                    renewed = store.renew(self.id, self.worker, self.lease)
                except sqlite3.OperationalError:
                    continue  # the database was busy past the timeout: the next beat tries again
                if not renewed:
                    self.lost = True
                    return
        finally:
            store.close()
