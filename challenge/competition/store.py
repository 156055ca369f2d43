"""The competition's state: submissions, their results per phase, events, in SQLite or PostgreSQL.

The store must survive kill -9 of any worker at any instruction: every change is one transaction,
and a claim is exclusive (SQLite takes the write lock up front with `BEGIN IMMEDIATE`; PostgreSQL
locks the claimed row and lets other workers skip it), so two workers can never both see a
submission as free. A worker holds a submission through a lease that its heartbeat extends; a
worker that dies stops renewing it, and the submission becomes claimable again. What differs
between the two engines is in `challenge.competition.engines`.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenacity import Retrying, retry_if_exception_type, stop_when_event_set, wait_fixed

from challenge.competition.engines import Engine, engine_for, lost_errors, lost_problem, transient_errors
from challenge.errors import ChallengeError

if TYPE_CHECKING:
    from challenge.scoring.result import Result

STATUSES = ("queued", "running", "scored", "failed")
# A stored result of another result schema (challenge.scoring.result): what to do about it.
RESTORE = "its submissions were scored by another kit version: score them again with this one, in a new store"


class StoreLost(ChallengeError):
    """The store stopped answering mid-command (challenge.competition.engines.lost_problem): one line, exit 2;
    a worker reconnects instead (challenge.competition.worker)."""


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


def migrate(conn: Any, engine: Engine, migrations: Sequence[Sequence[str]] | None = None, create: bool = True) -> int:
    """Bring the schema to len(migrations); safe when several processes open a new store at once.

    A store of a newer version, or (unless `create`) one without the schema, is refused before
    anything is written, each check inside the transaction that would migrate."""
    migrations = engine.migrations if migrations is None else migrations
    for version in range(1, len(migrations) + 1):
        with engine.transaction(conn, serial=True):
            current = engine.version(conn)
            if current > len(migrations):
                raise ChallengeError(
                    f"the competition store {engine.where} has schema version {current}, newer than this kit's "
                    f"{len(migrations)}: "
                    "upgrade the kit, or point competition.store at a store of this kit's version"
                )
            if current == 0 and not create:
                raise ChallengeError(
                    f"the competition store {engine.where} has no competition schema (version 0): "
                    "run `challenge competition init` with the same competition.store first"
                )
            if current >= version:
                continue
            for statement in migrations[version - 1]:
                conn.execute(statement)
            engine.set_version(conn, version)
    return engine.version(conn)


def worker_id() -> str:
    """Host and pid say whose claim it is; the random part keeps two workers in one process apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Store:
    """The competition database. One instance per thread (connections are not shared)."""

    def __init__(self, location: str | Path, create: bool = False, timeout: float = 60.0):
        self.location = str(location)
        self.engine = engine_for(location)
        if not create and not self.engine.exists():
            raise ChallengeError(
                f"no competition database at {self.engine.where}: run `challenge competition init` (with the same "
                "competition=... and overrides) first"
            )
        self.conn = self.engine.connect(timeout)
        try:
            with self._answering():
                self.version = migrate(self.conn, self.engine, create=create)
        except BaseException:
            self.conn.close()
            raise

    @property
    def where(self) -> str:
        """The store as a message may name it: a path, or a URL without its password."""
        return self.engine.where

    def close(self) -> None:
        self.conn.close()

    def _run(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self._answering():
            return self.conn.execute(self.engine.sql(sql), params)

    @contextmanager
    def _transaction(self, serial: bool = False) -> Iterator[None]:
        with self._answering(), self.engine.transaction(self.conn, serial):
            yield

    @contextmanager
    def _answering(self) -> Iterator[None]:
        """The engine's error for a store lost mid-command, as StoreLost (nothing half-done is stored)."""
        try:
            yield
        except lost_errors() as e:
            raise StoreLost(lost_problem(self.where, e)) from None

    # -- submitting -------------------------------------------------------------------------------
    def add(
        self,
        team: str,
        filename: str,
        content: bytes,
        sha256: str,
        now: float,
        check: Callable[["Store", str, str, float], None],
    ) -> int:
        """Insert a queued submission; `check(store, team, sha256, now)` runs inside the same
        transaction, so a refusal (ChallengeError) leaves nothing behind and two concurrent
        submissions cannot both slip under a quota."""
        with self._transaction(serial=True):
            check(self, team, sha256, now)
            row = self._run(
                "INSERT INTO submissions (team, filename, sha256, content, submitted_at) VALUES (?, ?, ?, ?, ?) "
                "RETURNING id",
                (team, filename, sha256, content, now),
            ).fetchone()
        return int(row[0])

    def find_sha256(self, sha256: str) -> Submission | None:
        row = self._run(f"SELECT {_COLUMNS} FROM submissions WHERE sha256 = ?", (sha256,)).fetchone()
        return Submission(*row) if row else None

    def count_since(self, team: str, since: float) -> int:
        return self._run(
            "SELECT COUNT(*) FROM submissions WHERE team = ? AND submitted_at >= ?", (team, since)
        ).fetchone()[0]

    # -- the queue ----------------------------------------------------------------------------------
    def claim(
        self, worker: str, lease_seconds: float, max_attempts: int, now: float | None = None
    ) -> Submission | None:
        """The oldest queued submission, or one whose worker stopped renewing its lease.

        A submission that has already cost `max_attempts` workers their lives is failed instead of
        handed out again, so that one file cannot stall the queue forever. On PostgreSQL a row that
        another worker is claiming right now is skipped, not waited for.
        """
        now = time.time() if now is None else now
        with self._transaction():
            while True:
                row = self._run(
                    f"SELECT {_COLUMNS} FROM submissions WHERE status = 'queued' OR (status = 'running' AND "
                    "lease_until < ?) ORDER BY id LIMIT 1" + self.engine.skip_locked,
                    (now,),
                ).fetchone()
                if row is None:
                    return None
                sub = Submission(*row)
                if sub.attempts < max_attempts:
                    break
                message = (
                    f"scoring was interrupted {sub.attempts} times (the worker stopped or died each time); not retried"
                )
                self._set_final(sub.id, "failed", "interrupted", message, now)
            self._run(
                "UPDATE submissions SET status = 'running', worker = ?, lease_until = ?, attempts = attempts + 1 "
                "WHERE id = ?",
                (worker, now + lease_seconds, sub.id),
            )
        return self.get(sub.id)

    def renew(self, submission_id: int, worker: str, lease_seconds: float) -> bool:
        """False when the lease was lost (expired and taken over): the caller must not store a result."""
        with self._transaction():
            cur = self._run(
                "UPDATE submissions SET lease_until = ? WHERE id = ? AND worker = ? AND status = 'running'",
                (time.time() + lease_seconds, submission_id, worker),
            )
        return cur.rowcount == 1

    def finish(
        self, submission_id: int, worker: str, status: str, verdict: str, message: str, results: dict[str, Result]
    ) -> bool:
        """Verdict and every phase's result in one transaction, only while this worker holds the lease."""
        with self._transaction():
            owner = self._run(
                "SELECT worker, status FROM submissions WHERE id = ?" + self.engine.lock_row, (submission_id,)
            ).fetchone()
            if tuple(owner or ()) != (worker, "running"):
                return False
            self._run("DELETE FROM results WHERE submission_id = ?", (submission_id,))
            for phase, result in results.items():
                self._insert_result(submission_id, phase, result)
            self._set_final(submission_id, status, verdict, message, time.time())
        return True

    def store_result(self, submission_id: int, phase: str, result: Result) -> None:
        """One more phase's result for a submission already judged (finalize's re-scoring), replacing an earlier one."""
        with self._transaction():
            self._run("DELETE FROM results WHERE submission_id = ? AND phase = ?", (submission_id, phase))
            self._insert_result(submission_id, phase, result)

    def _insert_result(self, submission_id: int, phase: str, result: Result) -> None:
        score = result.score.final_score if result.score else None
        self._run(
            "INSERT INTO results (submission_id, phase, status, final_score, result) VALUES (?, ?, ?, ?, ?)",
            (submission_id, phase, result.status, score, result.to_json()),
        )

    def release(self, submission_id: int, worker: str) -> None:
        """Give a claim back untouched (the scorer itself failed): it is queued again at once."""
        with self._transaction():
            self._run(
                "UPDATE submissions SET status = 'queued', worker = NULL, lease_until = NULL WHERE id = ? AND worker "
                "= ? AND status = 'running'",
                (submission_id, worker),
            )

    def _set_final(self, submission_id: int, status: str, verdict: str, message: str, now: float) -> None:
        self._run(
            "UPDATE submissions SET status = ?, verdict = ?, message = ?, finished_at = ?, lease_until = NULL WHERE "
            "id = ?",
            (status, verdict, message, now, submission_id),
        )

    # -- reading ------------------------------------------------------------------------------------
    def get(self, submission_id: int) -> Submission:
        row = self._run(f"SELECT {_COLUMNS} FROM submissions WHERE id = ?", (submission_id,)).fetchone()
        if row is None:
            raise ChallengeError(f"no submission {submission_id} in {self.where}")
        return Submission(*row)

    def content(self, submission_id: int) -> bytes:
        return bytes(self._run("SELECT content FROM submissions WHERE id = ?", (submission_id,)).fetchone()[0])

    def submissions(self) -> list[Submission]:
        return [Submission(*r) for r in self._run(f"SELECT {_COLUMNS} FROM submissions ORDER BY id")]

    def results(self, phase: str) -> dict[int, Result]:
        """submission id -> the full result of that phase, as the scorer wrote it."""
        from challenge.scoring.result import Result

        rows = self._run("SELECT submission_id, result FROM results WHERE phase = ?", (phase,))
        return {
            sid: Result.from_json(text, f"submission {sid}'s {phase} result in {self.where}", RESTORE)
            for sid, text in rows
        }

    def counts(self) -> dict[str, int]:
        found = dict(self._run("SELECT status, COUNT(*) FROM submissions GROUP BY status").fetchall())
        return {s: found.get(s, 0) for s in STATUSES}

    # -- events ---------------------------------------------------------------------------------------
    def record(self, kind: str, detail: dict[str, Any]) -> None:
        with self._transaction():
            self._run("INSERT INTO events (at, kind, detail) VALUES (?, ?, ?)", (time.time(), kind, json.dumps(detail)))

    def finalize(self, detail: dict[str, Any] | None = None) -> float:
        """Record the finalization, refused while submissions wait: every one must count or fail."""
        with self._transaction(serial=True):
            self.check_settled()
            now = time.time()
            self._run(
                "INSERT INTO events (at, kind, detail) VALUES (?, 'finalize', ?)", (now, json.dumps(detail or {}))
            )
        return now

    def check_settled(self) -> None:
        pending = self._run("SELECT COUNT(*) FROM submissions WHERE status IN ('queued', 'running')").fetchone()[0]
        if pending:
            raise ChallengeError(
                f"{pending} submission(s) are still queued or running: let `challenge worker` finish them, then "
                "finalize"
            )

    def last_event(self, kind: str) -> tuple[float, dict[str, Any]] | None:
        row = self._run("SELECT at, detail FROM events WHERE kind = ? ORDER BY id DESC LIMIT 1", (kind,)).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def integrity_check(self) -> str:
        """'ok', or the engine's list of problems (dangling references included)."""
        with self._answering():
            return "; ".join(self.engine.problems(self.conn)) or "ok"


class Heartbeat:
    """Renews a lease from a thread with its own connection while the scorer works on the main one."""

    def __init__(self, location: str | Path, submission_id: int, worker: str, lease_seconds: float):
        self.location, self.id, self.worker, self.lease = str(location), submission_id, worker, lease_seconds
        self.lost = False
        self._stop = threading.Event()
        self._store: Store | None = None  # the heartbeat thread's own connection
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        """Renew every third of a lease. A busy file or a dropped connection is waited out to the next beat, which
        reconnects and tries again (tenacity, woken early by __exit__); a renewal refused means the lease was lost."""
        again = Retrying(
            retry=retry_if_exception_type(transient_errors()),
            wait=wait_fixed(self.lease / 3),
            sleep=self._stop.wait,
            stop=stop_when_event_set(self._stop),
            retry_error_callback=lambda _: True,
        )
        try:
            while not self._stop.wait(self.lease / 3):
                if not again(self._renew):
                    self.lost = True
                    return
        finally:
            if self._store is not None:
                self._store.close()

    def _renew(self) -> bool:
        """One renewal on the heartbeat's connection, opened anew after a failure (which closed the old one)."""
        try:
            self._store = self._store or Store(self.location)
            return self._store.renew(self.id, self.worker, self.lease)
        except transient_errors():
            if self._store is not None:
                self._store.close()
            self._store = None
            raise
