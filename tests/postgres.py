"""A throwaway PostgreSQL server for the tests: initdb and pg_ctl in a temporary folder, on a free
port of 127.0.0.1, with password authentication, stopped and deleted afterwards.

PostgreSQL refuses to run as root, so as root the server runs as Debian's `postgres` user (runuser);
as anyone else it runs as that user. Debian keeps initdb and pg_ctl in /usr/lib/postgresql/<v>/bin.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER, PASSWORD = "challenge", "s3cret-pw"


class Unavailable(Exception):
    """Why no server could be started here (the tests that need one are skipped with this reason)."""


def binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version, reverse=True)), None
    )
    if found is None:
        raise Unavailable(
            f"PostgreSQL's {name} was not found (install Debian's postgresql package: `make system-deps` does as root)"
        )
    return found


def _version(path: str) -> float:
    try:
        return float(Path(path).parts[-3])
    except ValueError:
        return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PREFIX = "challenge-pg-"


def sweep_stale(root: Path, min_age_s: float = 600.0) -> list[Path]:
    """Delete the folders of servers whose test session was killed: their `stop` never ran.

    Each server lives in /tmp (its owner, `postgres`, cannot reach into pytest's private temp
    folder), so a killed session would otherwise leave 150 MB behind every time.
    """
    removed = []
    for folder in root.glob(f"{PREFIX}*"):
        if time.time() - folder.stat().st_mtime < min_age_s or _running(folder / "data" / "postmaster.pid"):
            continue  # one starting now, or one still serving another session
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _running(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().split()[0]), 0)
    except PermissionError:
        return True  # alive, someone else's
    except (OSError, ValueError, IndexError):
        return False
    return True


class Server:
    def __init__(self) -> None:
        sweep_stale(Path(tempfile.gettempdir()))
        self.folder = Path(tempfile.mkdtemp(prefix=PREFIX))
        self.port = free_port()
        self._names = itertools.count()
        pwfile = self.folder / "pw"
        pwfile.write_text(PASSWORD + "\n")
        self._as_owner = self._unprivileged(pwfile) if os.geteuid() == 0 else []
        self._owner_run(
            [
                binary("initdb"),
                "-D",
                str(self.folder / "data"),
                "-U",
                USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        # fsync off: a test server's data dies with it anyway, and the workers' durability is the store's
        # transactions, which the server keeps either way.
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._owner_run(
            [
                binary("pg_ctl"),
                "-D",
                str(self.folder / "data"),
                "-l",
                str(self.folder / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ]
        )

    def _unprivileged(self, pwfile: Path) -> list[str]:
        """The folder handed to `postgres`, and the prefix that runs a command as that user."""
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise Unavailable("running as root, and there is no `postgres` user to run the server as") from None
        for path in (self.folder, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        return [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "postgres", "--"]

    def _owner_run(self, argv: list[str]) -> None:
        r = subprocess.run([*self._as_owner, *argv], capture_output=True, text=True, timeout=120, cwd=self.folder)
        if r.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text()[-500:] if log.exists() else ""
            raise Unavailable(f"{Path(argv[0]).name} failed: {(r.stderr or r.stdout).strip()[-500:]} {tail}")

    def url(self, database: str = "postgres", password: str | None = PASSWORD) -> str:
        secret = f":{password}" if password is not None else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database's URL: each test its own, as a new SQLite file would be."""
        import psycopg

        name = f"t{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._owner_run([binary("pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop"])
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
