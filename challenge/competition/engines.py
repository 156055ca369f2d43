"""The two databases a competition store runs on, behind one small interface that `Store` speaks through.

SQLite is the default: one file, no server, but WAL needs shared memory, so every worker must be on
the machine whose local disk holds it. PostgreSQL (`competition.store=postgresql://...`) is a server
that workers on any number of machines reach over the network. What differs is said here and only
here: how to connect, how a transaction serializes check-then-write (SQLite's `BEGIN IMMEDIATE`,
PostgreSQL's advisory lock and row locks), where the schema version lives (`PRAGMA user_version`, a
`schema_version` table), the placeholders, and each engine's migrations.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from challenge.errors import ChallengeError

# Append only, in step: version k of one engine's schema is version k of the other's.
SQLITE_MIGRATIONS: tuple[tuple[str, ...], ...] = (
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

# DOUBLE PRECISION, not REAL (PostgreSQL's REAL is 4 bytes: a time would lose its seconds); JSON, not
# JSONB, keeps a result's text as the scorer wrote it, key order included.
POSTGRES_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        "INSERT INTO schema_version VALUES (0)",
        """CREATE TABLE submissions (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            team TEXT NOT NULL,
            filename TEXT NOT NULL,
            sha256 TEXT NOT NULL UNIQUE,
            content BYTEA NOT NULL,
            submitted_at DOUBLE PRECISION NOT NULL,
            status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'scored', 'failed')),
            worker TEXT,
            lease_until DOUBLE PRECISION,
            attempts INTEGER NOT NULL DEFAULT 0,
            finished_at DOUBLE PRECISION,
            verdict TEXT,
            message TEXT,
            CHECK ((status = 'running') = (lease_until IS NOT NULL))
        )""",
        "CREATE INDEX submissions_by_status ON submissions (status, id)",
        "CREATE INDEX submissions_by_team ON submissions (team, submitted_at)",
        """CREATE TABLE results (
            submission_id BIGINT NOT NULL REFERENCES submissions (id),
            phase TEXT NOT NULL,
            status TEXT NOT NULL,
            final_score DOUBLE PRECISION,
            result JSON NOT NULL,
            PRIMARY KEY (submission_id, phase)
        )""",
        """CREATE TABLE events (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at DOUBLE PRECISION NOT NULL,
            kind TEXT NOT NULL,
            detail JSON NOT NULL DEFAULT '{}'
        )""",
    ),
)
assert len(SQLITE_MIGRATIONS) == len(POSTGRES_MIGRATIONS), "every schema version exists for both engines"

# Any fixed number: the key of the advisory lock that serializes PostgreSQL's check-then-write transactions.
_SERIAL_LOCK = 0x5C0E


class Engine(Protocol):
    where: str  # the store as messages name it (a PostgreSQL URL without its password)
    migrations: Sequence[Sequence[str]]
    skip_locked: str  # appended to the claim's SELECT
    lock_row: str  # appended to a SELECT whose row the transaction then updates

    def exists(self) -> bool: ...
    def connect(self, timeout: float) -> Any: ...
    def transaction(self, conn: Any, serial: bool = False) -> Any: ...
    def version(self, conn: Any) -> int: ...
    def set_version(self, conn: Any, version: int) -> None: ...
    def sql(self, text: str) -> str: ...
    def problems(self, conn: Any) -> list[str]: ...


def engine_for(location: str | Path) -> Engine:
    """A postgresql:// URL or a SQLite file's path (what `competition.store` holds)."""
    text = str(location)
    if re.match(r"postgres(ql)?://", text):
        return PostgreSQL(text)
    if "://" in text:
        raise ChallengeError(
            f"competition.store={text.split('@')[-1]!r} is neither a SQLite file path nor a postgresql:// URL: fix "
            "competition.store"
        )
    return SQLite(Path(text))


class SQLite:
    """One file on a local disk; every write transaction takes the write lock up front."""

    migrations = SQLITE_MIGRATIONS
    skip_locked = ""  # BEGIN IMMEDIATE already makes the claiming transaction the only writer
    lock_row = ""

    def __init__(self, path: Path):
        self.path = path
        self.where = str(path)

    def exists(self) -> bool:
        return self.path.is_file()

    def connect(self, timeout: float) -> sqlite3.Connection:
        """Autocommit mode: every write goes through `transaction`, so nothing commits by accident."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        return conn

    @contextmanager
    def transaction(self, conn: sqlite3.Connection, serial: bool = False) -> Iterator[None]:
        """BEGIN IMMEDIATE: the write lock is taken before the first read, so check-then-write is atomic."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def version(self, conn: sqlite3.Connection) -> int:
        return conn.execute("PRAGMA user_version").fetchone()[0]

    def set_version(self, conn: sqlite3.Connection, version: int) -> None:
        conn.execute(f"PRAGMA user_version = {int(version)}")

    def sql(self, text: str) -> str:
        return text

    def problems(self, conn: sqlite3.Connection) -> list[str]:
        """SQLite's own page checks and its foreign-key check."""
        found = [r[0] for r in conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
        return found + [f"dangling reference in {r[0]} row {r[1]}" for r in conn.execute("PRAGMA foreign_key_check")]


class PostgreSQL:
    """A server: claims skip rows another worker has locked; checks that must see every row (a quota,
    finalization) take one advisory lock, as SQLite's write lock does."""

    migrations = POSTGRES_MIGRATIONS
    skip_locked = " FOR UPDATE SKIP LOCKED"
    lock_row = " FOR UPDATE"

    def __init__(self, url: str):
        self.url = url
        self.where = redacted(url)

    def exists(self) -> bool:
        return True  # only the server can tell: an empty database has schema version 0

    def connect(self, timeout: float) -> Any:
        import psycopg
        from psycopg.types.string import TextLoader

        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(min(timeout, 30))))
        except psycopg.ProgrammingError:  # a malformed URL; its text may hold the password
            raise ChallengeError(
                f"competition.store is not a PostgreSQL URL psycopg can read ({self.where}): write it as postgresql://user@host:port/database"
            ) from None
        except psycopg.OperationalError as e:
            raise ChallengeError(connect_problem(self.where, scrub(str(e), self.url))) from None
        conn.adapters.register_loader("json", TextLoader)  # results are read as the text the scorer wrote
        return conn

    @contextmanager
    def transaction(self, conn: Any, serial: bool = False) -> Iterator[None]:
        with conn.transaction():
            if serial:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SERIAL_LOCK,))
            yield

    def version(self, conn: Any) -> int:
        if conn.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
            return 0
        return conn.execute("SELECT version FROM schema_version").fetchone()[0]

    def set_version(self, conn: Any, version: int) -> None:
        conn.execute("UPDATE schema_version SET version = %s", (version,))

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def problems(self, conn: Any) -> list[str]:
        """The server enforces the constraints itself; this says whether a result lost its submission."""
        rows = conn.execute(
            "SELECT r.submission_id FROM results r LEFT JOIN submissions s ON s.id = r.submission_id WHERE s.id IS NULL"
        )
        return [f"dangling reference in results to submission {r[0]}" for r in rows]


def redacted(url: str) -> str:
    """postgresql://user@host:port/db: what a message may show (never the password)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:  # psycopg.ProgrammingError; any text of it may quote the password
        return "postgresql://(malformed URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


def scrub(message: str, url: str) -> str:
    """libpq's message with any password of the URL blanked, in case it quotes one."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        password = conninfo_to_dict(url).get("password")
    except Exception:
        return message
    return message.replace(str(password), "***") if password else message


# libpq's words for each failure, and what the organizer does about it.
_CONNECT_PROBLEMS = (
    (
        "password authentication failed",
        "authentication failed",
        "fix the password in competition.store's URL, PGPASSWORD or ~/.pgpass",
    ),
    (
        "no password supplied",
        "the server wants a password",
        "put it in competition.store's URL, PGPASSWORD or ~/.pgpass",
    ),
    ("connection refused", "connection refused", "start the server or fix competition.store"),
    ("could not translate host name", "unknown host", "fix the host in competition.store"),
    (
        "timeout expired",
        "no answer",
        "check that the server is up and reachable from this machine, or fix competition.store",
    ),
    ("does not exist", "no such database or role", "create it (createdb / createuser) or fix competition.store"),
)


def connect_problem(where: str, message: str) -> str:
    """One line for a failed connection: what happened and the fix."""
    lowered = message.lower()
    for words, problem, fix in _CONNECT_PROBLEMS:
        if words in lowered:
            return f"cannot reach the competition store {where} ({problem}): {fix}"
    first = message.strip().splitlines()[-1] if message.strip() else "unknown error"
    return f"cannot reach the competition store {where} ({first}): fix competition.store or the server"


def lost_errors() -> tuple[type[BaseException], ...]:
    """What a store raises when it stops answering mid-command: a server that went away or dropped this
    connection (restart, failover, network), a SQLite file locked past the timeout or gone bad on disk."""
    import psycopg

    return (sqlite3.OperationalError, psycopg.OperationalError, psycopg.InterfaceError)


def lost_problem(where: str, error: BaseException) -> str:
    """One line for a store lost mid-command, with the engine's own words and the fix."""
    words = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return (
        f"the competition store {where} stopped answering during the command ({words}): check that it is up and "
        "reachable "
        "(the server, or the disk of a SQLite file), then run the command again; every change is one transaction, "
        "so what was stored before is kept and a half-done change was not stored"
    )


def transient_errors() -> tuple[type[BaseException], ...]:
    """What a heartbeat waits out: a busy SQLite file, a PostgreSQL connection lost or refused."""
    import psycopg

    return (sqlite3.OperationalError, psycopg.OperationalError, ChallengeError)
