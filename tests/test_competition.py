"""Competitions: the SQLite store, submission rules, workers under SIGKILL, the leaderboard page in a
real browser, and the Codabench bundle checked against Codabench's v2 rules and run locally."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pytest
import yaml

from challenge.commands.competition import init
from challenge.competition.bundle import COLUMNS, try_task, validate
from challenge.competition.rules import Limits, in_transaction_checks
from challenge.competition.store import Heartbeat, Store, StoreLost, migrate
from challenge.errors import ChallengeError
from challenge.scoring.result import Result
from challenge.scoring.row import LeaderboardRow
from tests.conftest import CHALLENGE, REPO, TINY, compose_config, run_cli
from tests.postgres import PASSWORD, USER, Server, free_port
from tests.results import make_result, make_score, rejected

SUBMISSIONS = REPO / "tests" / "submissions"
TEMPLATE = REPO / "submissions" / "template.py"
FAST_WORKERS = [
    "competition.worker.lease_seconds=6",
    "competition.worker.poll_seconds=1",
    "scorer.budget_seconds=10",
    "scorer.n_bootstrap=20",
]


# -- helpers -------------------------------------------------------------------------------------------
def new_competition(root: Path, store: str | None = None) -> list[str]:
    """A fresh database (what `competition init` creates besides the pools) and the overrides naming
    it: `store` (a SQLite path or a PostgreSQL URL), by default competition.db in `root`."""
    store = store or str(root / "competition.db")
    Store(store, create=True).close()
    return [*TINY, f"competition.root={root}", f"competition.store={store}"]


def queue(store_url: str | Path, files: list[tuple[str, str, bytes]]) -> list[int]:
    """(team, filename, content) rows through the same checked insert as `challenge submit`."""
    import hashlib

    store = Store(store_url)
    check = in_transaction_checks(Limits(None, None))
    ids = [
        store.add(team, name, data, hashlib.sha256(data).hexdigest(), time.time(), check) for team, name, data in files
    ]
    store.close()
    return ids


def variant(name: str, n: int) -> bytes:
    """The same test submission with another sha256."""
    return (SUBMISSIONS / name).read_bytes() + f"\n# variant {n}\n".encode()


def rows(store_url: str | Path) -> dict[int, tuple]:
    """id -> (status, verdict, attempts, worker), read through a connection of its own."""
    store = Store(store_url)
    try:
        return {s.id: (s.status, s.verdict, s.attempts, s.worker) for s in store.submissions()}
    finally:
        store.close()


@pytest.fixture(scope="module")
def pools(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Both phases' original models and pools, built once in the session cache (in process: faster)."""
    out = tmp_path_factory.mktemp("init")
    init(compose_config("competition", [*TINY, f"competition.root={out}"], out), argparse.Namespace())


# -- store -------------------------------------------------------------------------------------------
def test_migrations_are_versioned_idempotent_and_wal(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    store = Store(db, create=True)
    assert store.version == len(store.engine.migrations) == 1
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert Store(db).version == 1  # reopening runs nothing again
    with pytest.raises(ChallengeError, match="competition init"):
        Store(tmp_path / "missing.db")


def test_migrations_run_once_and_a_newer_store_is_refused(store_url: str) -> None:
    store = Store(store_url, create=True)
    later = (*store.engine.migrations, ("CREATE TABLE notes (text TEXT)",))
    assert migrate(store.conn, store.engine, later) == 2
    assert migrate(store.conn, store.engine, later) == 2  # the new step ran once
    store.conn.execute("INSERT INTO notes VALUES ('x')")
    assert store.conn.execute("SELECT COUNT(*) FROM notes").fetchone()[0] == 1
    with pytest.raises(ChallengeError, match=r"has schema version 2, newer than this kit's 1: upgrade the kit"):
        Store(store_url)
    store.close()


CLAIMER = """
import sys
from challenge.competition.store import Store, worker_id
from tests.results import make_result, make_score
store, me = Store(sys.argv[1]), worker_id()
while (sub := store.claim(me, 60, 3)) is not None:
    assert store.finish(sub.id, me, "scored", "scored", "ok", {"public": make_result(make_score(final_score=0.5))})
    print(sub.id, flush=True)
"""


def test_claims_are_exclusive_across_processes(store_url: str, tmp_path: Path) -> None:
    new_competition(tmp_path, store_url)
    ids = queue(store_url, [(f"t{i % 5}", "x.py", f"# {i}".encode()) for i in range(40)])
    procs = [
        subprocess.Popen([sys.executable, "-c", CLAIMER, store_url], stdout=subprocess.PIPE, text=True, cwd=REPO)
        for _ in range(4)
    ]
    claimed = [int(line) for p in procs for line in p.communicate(timeout=300)[0].split()]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(claimed) == ids  # every submission once, none twice
    assert {r[0] for r in rows(store_url).values()} == {"scored"}


def test_expired_lease_is_reclaimed_and_the_old_owner_cannot_store(store_url: str, tmp_path: Path) -> None:
    new_competition(tmp_path, store_url)
    (sid,) = queue(store_url, [("owls", "a.py", b"x = 1")])
    store, t0 = Store(store_url), time.time()
    assert store.claim("A", 10, 3, now=t0).id == sid
    assert store.claim("B", 10, 3, now=t0 + 5) is None  # A's lease still runs
    taken = store.claim("B", 10, 3, now=t0 + 11)
    assert (taken.id, taken.worker, taken.attempts) == (sid, "B", 2)
    assert not store.renew(sid, "A", 10)
    assert not store.finish(sid, "A", "scored", "scored", "late", {})
    result = replace(rejected("raised", "boom é"), timing={"zeta": [0.1, 1e-300], "alpha": {"b": None, "a": "é"}})
    assert store.finish(sid, "B", "failed", "raised", "boom", {"public": result})
    assert store.get(sid).status == "failed" and store.content(sid) == b"x = 1" and store.integrity_check() == "ok"
    stored = store.results("public")[sid]
    assert (
        stored == result and stored.to_json() == result.to_json()
    )  # the scorer's result back as written: values, key order, float bits


def test_a_submission_that_keeps_losing_its_worker_is_failed_not_retried(store_url: str, tmp_path: Path) -> None:
    new_competition(tmp_path, store_url)
    (sid,) = queue(store_url, [("owls", "a.py", b"x = 1")])
    store, t = Store(store_url), time.time()
    for i in range(3):
        assert store.claim(f"w{i}", 1, 3, now=t + 2 * i).id == sid
    assert store.claim("w3", 1, 3, now=t + 10) is None
    sub = store.get(sid)
    assert (sub.status, sub.verdict) == ("failed", "interrupted") and "3 times" in sub.message


def test_heartbeat_keeps_the_lease_alive(store_url: str, tmp_path: Path) -> None:
    new_competition(tmp_path, store_url)
    (sid,) = queue(store_url, [("owls", "a.py", b"x = 1")])
    store = Store(store_url)
    store.claim("A", 0.9, 3)
    with Heartbeat(store.location, sid, "A", 0.9) as beat:
        time.sleep(2.5)
        assert store.claim("B", 0.9, 3) is None
    assert not beat.lost
    time.sleep(1.0)
    assert store.claim("B", 0.9, 3).id == sid  # no heartbeat, so the lease ran out


def _sql(url: str, query: str) -> object:
    """One value straight from the server, past the Store (which refuses such databases)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query).fetchone()[0]


def bad_store_runs(cases: list[tuple[tuple[str, ...], str, str]], tmp_path: Path) -> None:
    """Each (command, store URL, message with {} for the URL) run as a user would, side by side: the
    message in one line, exit 2, no password shown, no competition folder and no pool written."""

    def attempt(i: int) -> subprocess.CompletedProcess:
        command, url, _ = cases[i]
        overrides = [
            *TINY,
            f"competition.root={tmp_path}/comp{i}",
            f"competition.store={url}",
            f"hydra.run.dir={tmp_path}/run{i}",
        ]
        return run_cli(*command, *overrides, env={"CHALLENGE_CACHE_DIR": str(tmp_path / "cache")})

    with ThreadPoolExecutor(max_workers=4) as ex:
        results = list(ex.map(attempt, range(len(cases))))
    for (command, url, message), r in zip(cases, results):
        shown = (
            "postgresql://" + url.split("//")[1].split(":")[0] + "@" + url.split("@")[1]
        )  # the URL without its password
        assert (r.returncode, r.stderr) == (2, f"error: {message.format(shown)}\n"), command
        assert PASSWORD not in r.stderr + r.stdout and "not-the-password" not in r.stderr + r.stdout
    assert not list(tmp_path.glob("comp*")) and not (tmp_path / "cache" / "pools").exists()


SUBMIT = ("submit", "--team", "owls", str(SUBMISSIONS / "raises.py"))
REFUSED = "cannot reach the competition store {} (connection refused): start the server or fix competition.store"


def test_postgres_store_problems_are_one_line_exit_2_and_write_nothing(postgres: Server, tmp_path: Path) -> None:
    """Unreachable, a wrong password, a newer schema, no schema yet: nothing is written anywhere."""
    wrong_version, no_schema = postgres.new_database(), postgres.new_database()
    store = Store(wrong_version, create=True)
    store.conn.execute("UPDATE schema_version SET version = 7")
    store.close()
    bad_store_runs(
        [
            (SUBMIT, f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{free_port()}/comp", REFUSED),
            (
                SUBMIT,
                wrong_version.replace(PASSWORD, "not-the-password"),
                "cannot reach the competition store {} (authentication failed): fix the password in "
                "competition.store's URL, PGPASSWORD or ~/.pgpass",
            ),
            (
                SUBMIT,
                wrong_version,
                "the competition store {} has schema version 7, newer than this kit's 1: upgrade the kit, or point "
                "competition.store at a store of this kit's version",
            ),
            (
                ("worker",),
                no_schema,
                "the competition store {} has no competition schema (version 0): run `challenge competition init` "
                "with the same competition.store first",
            ),
        ],
        tmp_path,
    )
    assert (
        _sql(wrong_version, "SELECT COUNT(*) FROM submissions") == 0
        and _sql(wrong_version, "SELECT version FROM schema_version") == 7
    )
    assert (
        _sql(no_schema, "SELECT to_regclass('submissions')") is None
        and _sql(no_schema, "SELECT to_regclass('schema_version')") is None
    )


@pytest.mark.slow  # four more CLI runs; submit's copy of the same check is in the fast tests
def test_every_competition_command_names_an_unreachable_store(tmp_path: Path) -> None:
    """init stops before building any pool."""
    url = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{free_port()}/comp"
    bad_store_runs(
        [
            (command, url, REFUSED)
            for command in (("competition", "init"), ("worker",), ("leaderboard",), ("competition", "finalize"))
        ],
        tmp_path,
    )


def test_heartbeat_reconnects_when_the_server_drops_its_connection(postgres: Server, tmp_path: Path) -> None:
    """The server ends every other session mid-lease (a restart, a failover): the heartbeat opens a
    new connection at its next beat and the lease never runs out."""
    url = postgres.new_database()
    new_competition(tmp_path, url)
    (sid,) = queue(url, [("owls", "a.py", b"x = 1")])
    store = Store(url)
    store.claim("A", 1.5, 3)
    with Heartbeat(url, sid, "A", 1.5) as beat:
        time.sleep(0.8)
        dropped = store.conn.execute(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid "
            "<> pg_backend_pid()"
        ).fetchone()[0]
        time.sleep(2.0)  # longer than the lease: only a renewal after the drop keeps it
        assert store.claim("B", 1.5, 3) is None
    assert dropped == 1 and not beat.lost
    assert store.get(sid).worker == "A"


def _drop_sessions(url: str, refuse: bool = False) -> None:
    """End every other session of the database (a restart, a failover); `refuse`: and let none in again."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {'false' if refuse else 'true'}")
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)
def test_a_store_lost_mid_command_is_one_line_and_keeps_what_was_stored(store_url: str, tmp_path: Path) -> None:
    """PostgreSQL: the server ends the session between two commands' statements; SQLite: another process
    holds the write lock past the timeout. Either way one line naming the store and the fix, and the
    submission stored before is there while the half-done one is not."""
    new_competition(tmp_path, store_url)
    queue(store_url, [("owls", "a.py", b"x = 1")])
    store = Store(store_url, timeout=0.2)
    if store_url.startswith("postgresql"):
        _drop_sessions(store_url)
    else:
        holder = Store(store_url)
        holder.conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreLost) as lost:
        store.add("bats", "b.py", b"y = 2", "b" * 64, time.time(), in_transaction_checks(Limits(None, None)))
    words = (
        "terminating connection due to administrator command"
        if store_url.startswith("postgresql")
        else "database is locked"
    )
    assert str(lost.value).startswith(f"the competition store {store.where} stopped answering during the command (")
    assert words in str(lost.value) and "then run the command again" in str(lost.value) and "\n" not in str(lost.value)
    if not store_url.startswith("postgresql"):
        holder.conn.execute("ROLLBACK")
    assert [(r[0], r[2]) for r in rows(store_url).values()] == [("queued", 0)]  # owls' submission, and nothing of bats'


def test_a_worker_reconnects_to_a_store_that_dropped_it_and_gives_up_after_a_lease(
    postgres: Server, tmp_path: Path
) -> None:
    from challenge.competition.worker import run as work

    url = postgres.new_database()
    cfg = compose_config(
        "competition", [*new_competition(tmp_path, url), "competition.worker.lease_seconds=3"], tmp_path
    )
    said: list[str] = []

    def say(line: str, refuse: bool = False) -> None:
        said.append(line)
        if len(said) == 1:  # the worker's first line: it holds its connection, and is about to claim
            _drop_sessions(url, refuse)

    assert work(cfg, follow=False, say=say) == {}
    assert (
        "stopped answering during the command" in said[1]
        and said[2].startswith("reconnected to postgresql://")
        and "queue empty" in said[3]
    )
    said.clear()
    with pytest.raises(
        ChallengeError,
        match=r"cannot reach the competition store .*not currently accepting connections.* \(gave up after "
        r"reconnecting for 3 s, competition.worker.lease_seconds\)",
    ):
        work(cfg, follow=False, say=lambda line: say(line, refuse=True))
    _drop_sessions(url)  # let connections in again


# -- rules -------------------------------------------------------------------------------------------
def test_submit_refusals_are_one_line_and_store_nothing(tmp_path: Path) -> None:
    overrides = [
        *new_competition(tmp_path),
        "competition.limits.per_team_per_day=2",
        "competition.limits.max_file_bytes=400",
    ]
    ok = run_cli("submit", "--team", "owls", str(SUBMISSIONS / "do_nothing.py"), *overrides)
    assert ok.returncode == 0 and "submission 1 queued for team owls" in ok.stdout, ok.stderr
    big = tmp_path / "big.py"
    big.write_text("x = 1\n" * 100)
    refusals = {
        "already submitted by team owls (submission 1": ("--team", "owls", str(SUBMISSIONS / "do_nothing.py")),
        "already submitted by another team": ("--team", "bats", str(SUBMISSIONS / "do_nothing.py")),
        "over this competition's limit of 400 bytes": ("--team", "owls", str(big)),
        "team name 'no spaces!' is not allowed": ("--team", "no spaces!", str(SUBMISSIONS / "raises.py")),
        "no file at": ("--team", "owls", str(tmp_path / "missing.py")),
        "required: --team": (str(SUBMISSIONS / "raises.py"),),
    }
    for words, args in refusals.items():
        r = run_cli("submit", *args, *overrides)
        assert r.returncode == 2 and r.stderr.startswith("error: ") and words in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert run_cli("submit", "--team", "owls", str(SUBMISSIONS / "raises.py"), *overrides).returncode == 0
    quota = run_cli("submit", "--team", "owls", str(SUBMISSIONS / "exits.py"), *overrides)
    assert quota.returncode == 2 and "used its 2 submissions for today" in quota.stderr
    assert [(r[0], r[2]) for r in rows(tmp_path / "competition.db").values()] == [
        ("queued", 0),
        ("queued", 0),
    ]  # nothing else stored


def test_no_submissions_outside_the_public_phase_or_after_finalize(tmp_path: Path) -> None:
    overrides = new_competition(tmp_path)
    late = run_cli(
        "submit",
        "--team",
        "owls",
        str(SUBMISSIONS / "raises.py"),
        *overrides,
        "competition.phases.public.end=2024-01-01",
        "competition.phases.public.start=2023-01-01",
    )
    assert late.returncode == 2 and "the public phase closed on 2024-01-01" in late.stderr
    Store(tmp_path / "competition.db").finalize()
    final = run_cli("submit", "--team", "owls", str(SUBMISSIONS / "raises.py"), *overrides)
    assert final.returncode == 2 and "was finalized" in final.stderr
    assert rows(tmp_path / "competition.db") == {}


# -- workers -------------------------------------------------------------------------------------------
def start_worker(overrides: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [str(CHALLENGE), "worker", "--follow", *overrides, f"hydra.run.dir={log.with_suffix('')}"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def holder_pid(root: Path, store: str, sid: int, timeout: float = 300) -> int:
    """The pid of the worker scoring `sid`, once its sandboxed child is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, _, worker = rows(store).get(sid, (None,) * 4)
        if status == "running" and (root / "submissions" / str(sid) / "public").exists():
            return int(worker.split(":")[1])
        time.sleep(0.2)
    raise AssertionError(f"no worker started scoring submission {sid} within {timeout} s")


def kill_one_worker_midway(
    root: Path, store: str, files: list[tuple[str, str, bytes]], tmp_path: Path, timeout: float
) -> tuple[dict[int, tuple], dict[int, int]]:
    """Three `challenge worker --follow` processes on a new competition's queue in `store`; the one
    scoring the first submission gets SIGKILL. Returns the final rows and how many workers reported
    storing each id."""
    overrides = new_competition(root, store)
    ids = queue(store, files)
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    workers = [start_worker([*overrides, *FAST_WORKERS], log) for log in logs]
    try:
        victim = holder_pid(root, store, ids[0])
        os.kill(victim, signal.SIGKILL)
        next(w for w in workers if w.pid == victim).wait()
        deadline = time.monotonic() + timeout
        while any(r[0] in ("queued", "running") for r in rows(store).values()):
            assert time.monotonic() < deadline, f"queue not finished: {rows(store)}"
            assert sum(w.poll() is None for w in workers) == 2, "a surviving worker died: " + " | ".join(
                p.read_text()[-2000:] for p in logs
            )
            time.sleep(0.5)
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
            w.wait()
    lines = [line for log in logs for line in log.read_text().splitlines() if line.startswith("#")]
    mentions = {sid: sum(line.startswith(f"#{sid} ") for line in lines) for sid in ids}
    return rows(store), mentions


def check_exactly_once(final: dict[int, tuple], mentions: dict[int, int], store_url: str) -> None:
    assert {r[0] for r in final.values()} <= {"scored", "failed"}
    assert set(mentions.values()) == {1}, mentions  # each stored by exactly one worker
    store = Store(store_url)
    assert store.integrity_check() == "ok"
    for sid, (status, verdict, _, _) in final.items():
        public = store.results("public").get(sid)
        assert public is not None, sid
        private = store.results("private").get(sid)
        if status == "scored":
            assert public.status == private.status == "scored"
        else:
            assert verdict in (public.status, private.status if private else None)


@pytest.mark.slow
def test_three_workers_one_killed_each_submission_ends_once(pools: None, store_url: str, tmp_path: Path) -> None:
    """The fast variant: real workers and scoring, but five submissions, four rejected at load time."""
    root = tmp_path / "comp"
    files = [
        ("a", "do_nothing.py", variant("do_nothing.py", 1)),
        ("b", "syntax_error.py", variant("syntax_error.py", 1)),
        ("c", "no_function.py", variant("no_function.py", 1)),
        ("d", "raises_at_import.py", variant("raises_at_import.py", 1)),
        ("e", "wrong_signature.py", variant("wrong_signature.py", 1)),
    ]
    final, mentions = kill_one_worker_midway(root, store_url, files, tmp_path, timeout=600)
    check_exactly_once(final, mentions, store_url)
    assert final[1][2] == 2  # the killed worker's submission was claimed again
    assert [final[i][:2] for i in range(1, 6)] == [
        ("scored", "scored"),
        ("failed", "syntax_error"),
        ("failed", "no_function"),
        ("failed", "raised"),
        ("failed", "bad_signature"),
    ]


@pytest.mark.slow
def test_twelve_submissions_three_workers_sigkill_midway(pools: None, store_url: str, tmp_path: Path) -> None:
    root = tmp_path / "comp"
    hostile = [
        "syntax_error.py",
        "no_function.py",
        "raises_at_import.py",
        "raises.py",
        "sleeps.py",
        "exits.py",
        "returns_not_model.py",
        "wrong_architecture.py",
    ]
    files = [(f"team{i}", "do_nothing.py", variant("do_nothing.py", i)) for i in range(4)]
    files += [(f"bad{i}", name, variant(name, i)) for i, name in enumerate(hostile)]
    final, mentions = kill_one_worker_midway(root, store_url, files, tmp_path, timeout=1800)
    check_exactly_once(final, mentions, store_url)
    assert final[1][2] == 2  # the killed worker's submission was claimed again
    assert sum(r[0] == "scored" for r in final.values()) == 4
    verdicts = sorted(r[1] for r in final.values() if r[0] == "failed")
    assert verdicts == sorted(
        ["syntax_error", "no_function", "raised", "raised", "timeout", "crashed", "not_a_model", "wrong_architecture"]
    )


def test_the_workers_slurm_launcher_gives_each_job_one_gpu() -> None:
    """conf/hydra/launcher/workers_slurm.yaml: submitit's SLURM launcher, one GPU and one task per job."""
    from hydra import compose, initialize_config_dir

    from challenge.cli import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "competition",
            overrides=[
                "hydra/launcher=workers_slurm",
                "hydra.launcher.partition=gpu",
                "competition.store=postgresql://o@db:5432/c",
            ],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes, launcher.partition) == (1, 1, 1, "gpu")
    assert cfg.competition.store == "postgresql://o@db:5432/c"


@pytest.mark.slow  # two submitit jobs, each a worker process that imports torch and scores
def test_two_submitit_jobs_share_one_postgres_queue_each_submission_scored_once(
    pools: None, postgres: Server, tmp_path: Path
) -> None:
    """`challenge worker -m` through Hydra's submitit launcher (submitit_local: the same jobs as on
    SLURM, run on this machine), each job with its own CUDA_VISIBLE_DEVICES, one PostgreSQL store."""
    store = postgres.new_database()
    root = tmp_path / "comp"
    overrides = new_competition(root, store)
    files = [
        ("a", "do_nothing.py", variant("do_nothing.py", 20)),
        ("b", "syntax_error.py", variant("syntax_error.py", 20)),
        ("c", "no_function.py", variant("no_function.py", 20)),
        ("d", "wrong_signature.py", variant("wrong_signature.py", 20)),
    ]
    ids = queue(store, files)
    sweep = tmp_path / "sweep"
    r = run_cli(
        "worker",
        "-m",
        "hydra/launcher=submitit_local",
        "competition.worker.index=range(2)",
        "competition.worker.gpu=${competition.worker.index}",
        "hydra.launcher.timeout_min=30",
        f"hydra.sweep.dir={sweep}",
        *overrides,
        *FAST_WORKERS,
        timeout=1200,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    logs = sorted(sweep.glob(".submitit/*/*_log.out"))
    texts = [p.read_text() for p in logs]
    assert len(logs) == 2, logs
    starts = sorted(re.search(r"\(index (\d), CUDA_VISIBLE_DEVICES=(\S+)\)", t).groups() for t in texts)
    assert starts == [("0", "0"), ("1", "1")]  # two jobs, each on its own device
    lines = [line for t in texts for line in t.splitlines() if line.startswith("#")]
    assert {sid: sum(line.startswith(f"#{sid} ") for line in lines) for sid in ids} == dict.fromkeys(
        ids, 1
    )  # each stored by one job
    final = rows(store)
    assert [final[i][:3] for i in ids] == [
        ("scored", "scored", 1),
        ("failed", "syntax_error", 1),
        ("failed", "no_function", 1),
        ("failed", "bad_signature", 1),
    ]
    assert {w.split(":")[1] for *_, w in final.values()} <= {
        re.search(r"worker [^:]+:(\d+):", t).group(1) for t in texts
    }


@pytest.mark.parametrize(
    "store_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)], indirect=True
)  # the PG copy is one more CLI run
def test_worker_stops_on_the_organizers_fault_and_gives_the_submission_back(store_url: str, tmp_path: Path) -> None:
    overrides = new_competition(tmp_path, store_url)
    queue(store_url, [("owls", "a.py", variant("do_nothing.py", 9))])
    r = run_cli(
        "worker", *overrides, "pool.first_seed=777", f"hydra.run.dir={tmp_path}/run"
    )  # no pool for these settings
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: no reference pool"), r.stderr
    assert rows(store_url)[1][:3] == ("queued", None, 1)  # back in the queue, untouched


# -- leaderboard ------------------------------------------------------------------------------------------
def fake_result(final: float, f: float, ci: tuple[float, float]) -> Result:
    """A scored result with these numbers, shaped as challenge.scoring.scorer makes them."""
    return make_result(
        make_score(final_score=final, forget_quality=f, forget_quality_ci=list(ci), retain_ratio=0.9, test_ratio=0.95)
    )


def stored_competition(root: Path, store_url: str | None = None) -> list[str]:
    """Five teams: three scored (owls twice, bats close behind), one failed, one still queued."""
    overrides = new_competition(root, store_url)
    entries = [
        ("owls", (0.30, 0.50)),
        ("bats", (0.28, 0.48)),
        ("cats", (0.05, 0.10)),
        ("owls", (0.10, 0.20)),
        ("newts", "failed"),
        ("yaks", "queued"),
    ]
    store = Store(store_url or root / "competition.db")
    check = in_transaction_checks(Limits(None, None))
    for i, (team, score) in enumerate(entries):
        sid = store.add(team, f"{team}_v{i}.py", f"# {i}".encode(), f"{i:064x}", time.time() + i, check)
        if score == "queued":
            continue
        store.claim("w", 60, 3)
        if score == "failed":
            store.finish(
                sid,
                "w",
                "failed",
                "raised",
                "public phase: the submission raised ValueError",
                {"public": rejected("raised", "boom")},
            )
            continue
        final, f = score
        results = {
            "public": fake_result(final, f, (f - 0.1, f + 0.1)),
            "private": fake_result(0.4 - final, f, (f - 0.1, f + 0.1)),
        }
        store.finish(sid, "w", "scored", "scored", "scored on public, private", results)
    return overrides


@pytest.mark.parametrize(
    "store_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)], indirect=True
)  # the PG copy: three more CLI runs
def test_leaderboard_ranks_best_per_team_and_hides_private_until_finalize(store_url: str, tmp_path: Path) -> None:
    overrides = stored_competition(tmp_path, store_url)
    before = run_cli("leaderboard", *overrides)
    assert before.returncode == 0, before.stderr
    table = before.stdout
    assert table.index("owls") < table.index("bats") < table.index("cats")
    assert "owls_v3.py" not in table  # only a team's best submission is ranked
    assert "private scores hidden" in table and "final ranking" not in table
    assert "P(F > next)" in table and "CI overlap ≈" in table  # no kept confidences in this store: intervals decide
    assert "newts" in table and "yaks" in table
    early = run_cli("competition", "finalize", *overrides)
    assert early.returncode == 2 and "1 submission(s) are still queued or running" in early.stderr
    store = Store(store_url)
    yaks = store.claim("w", 60, 3)
    store.finish(
        yaks.id,
        "w",
        "failed",
        "syntax_error",
        "public phase: syntax error",
        {"public": rejected("syntax_error", "syntax error")},
    )
    fin = run_cli("competition", "finalize", *overrides)
    assert fin.returncode == 0, fin.stderr
    assert "final ranking" in fin.stdout
    private = fin.stdout[fin.stdout.index("private phase") :]
    assert private.index("cats") < private.index("bats") < private.index("owls")  # 0.35 > 0.12 > 0.10


def test_standings_compare_neighbours_paired_from_the_workers_folders(tmp_path: Path) -> None:
    """Confidences kept where the worker has the scorer write (root/submissions/<id>/<phase>/) for owls
    (#1) and bats (#2): that pair is compared paired; bats against cats (none kept) by intervals."""
    import numpy as np

    from challenge.competition.leaderboard import standings
    from challenge.scoring.compare import Confidences, compare_kept, write_confidences

    stored_competition(tmp_path)
    rng = np.random.default_rng(0)
    loc = rng.normal(2, 3, 30)
    r = rng.normal(loc, 1.0, (16, 30))
    kept = {
        sid: Confidences(rng.normal(loc + shift, 1.0, (16, 30)), r, "pool-1") for sid, shift in ((1, 0.0), (2, 0.5))
    }
    for sid, c in kept.items():
        write_confidences(tmp_path / "submissions" / str(sid) / "public" / "forget_confidences.npz", c)
    rows, _ = standings(Store(tmp_path / "competition.db"), "public", root=tmp_path)
    assert [r.team for r in rows[:3]] == ["owls", "bats", "cats"]
    assert rows[0].compared == "paired" and rows[0].p_next == compare_kept(kept[1], kept[2], n_bootstrap=20).p_a_above
    assert rows[1].compared == "intervals" and rows[1].p_next is None
    without, _ = standings(Store(tmp_path / "competition.db"), "public")
    assert without[0].compared == "intervals"


def test_leaderboard_page_shows_every_team_in_headless_chromium(tmp_path: Path, browser) -> None:  # noqa: ANN001
    overrides = stored_competition(tmp_path / "comp")
    page = tmp_path / "board" / "index.html"
    r = run_cli("leaderboard", "--html", str(page), *overrides)
    assert r.returncode == 0 and page.is_file(), r.stderr
    browser.get(page.as_uri())
    text = browser.find_element("tag name", "body").text
    table_rows = browser.find_elements("css selector", "#leaderboard tbody tr")
    images = browser.execute_script(
        "return Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length"
    )
    assert len(table_rows) == 5 and images >= 2  # one row per team; the summary and per-method plots render
    for team in ("owls", "bats", "cats", "newts", "yaks"):
        assert team in text, f"{team} missing from the page"


def test_leaderboard_logs_a_wandb_table_offline(tmp_path: Path) -> None:
    overrides = [o for o in stored_competition(tmp_path / "comp") if o != "logger=none"]
    r = run_cli(
        "leaderboard", *overrides, "logger=wandb", f"hydra.run.dir={tmp_path}/run", env={"WANDB_MODE": "offline"}
    )
    assert r.returncode == 0, r.stderr
    tables = list((tmp_path / "run").rglob("leaderboard/public*.table.json"))
    assert tables, list((tmp_path / "run").rglob("*"))
    assert {row[1] for row in json.loads(tables[0].read_text())["data"]} >= {"owls", "bats", "cats", "newts", "yaks"}


# -- Codabench bundle ----------------------------------------------------------------------------------
# A priced budget, ten times the tiny recipe's retrain (3 steps): one epoch of fine-tuning fits, a loop does not.
BUNDLE = [*TINY, "scorer.n_bootstrap=20", "scorer.budget_fraction=10"]


@pytest.fixture(scope="module")
def bundle(pools: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "demo.zip"
    r = run_cli(
        "competition",
        "bundle",
        "--out",
        str(out),
        *BUNDLE,
        f"competition.bundle.sample_submission={SUBMISSIONS / 'do_nothing.py'}",
    )
    assert r.returncode == 0, r.stderr
    assert "passes the v2 unpacker's checks" in r.stdout
    return out


def test_bundle_layout_follows_codabench_v2(bundle: Path, tmp_path: Path) -> None:
    assert "2 tasks, phases public, private" in validate(bundle)
    with zipfile.ZipFile(bundle) as z:
        names = set(z.namelist())
        spec = yaml.safe_load(z.read("competition.yaml"))
        public_inputs = __import__("torch").load(z.open("public/input_data/data.pt"), weights_only=True)
    assert spec["version"] == 2 and "leaderboards" in spec and "leaderboard" not in spec
    assert [p["tasks"] for p in spec["phases"]] == [[0], [1]] and spec["phases"][1]["auto_migrate_to_this_phase"]
    assert [c["key"] for c in spec["leaderboards"][0]["columns"]] == [k for k, _, _ in COLUMNS]
    for task in spec["tasks"]:
        for kind in ("ingestion_program", "scoring_program", "input_data", "reference_data"):
            assert any(n.startswith(task[kind] + "/") for n in names), (task, kind)
    assert {
        "scoring_program/challenge/competition/scoring_program.py",
        "ingestion_program/metadata.yaml",
        "logo.png",
        "pages/terms.md",
    } <= names
    with zipfile.ZipFile(bundle) as z:
        data_page = z.read("pages/data.md").decode()
    assert re.search(r"- \*\*public\*\*: every training image of some people \(\d+ images; the retain set", data_page)
    assert "- **private**: every training image of some people" in data_page
    assert set(public_inputs) == {
        "images",
        "ages",
        "groups",
        "person_ids",
        "retain",
        "forget",
        "val",
    }  # no test images for participants


def rewrite(bundle: Path, out: Path, change: Callable[[dict], object] | set[str]) -> Path:
    """A copy of the bundle with competition.yaml edited in place by `change`, or without the files
    whose names start with one of `change`."""
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
        spec = yaml.safe_load(src.read("competition.yaml"))
        dropped = change if isinstance(change, set) else set()
        if callable(change):
            change(spec)
        for name in src.namelist():
            if name != "competition.yaml" and not any(name.startswith(d) for d in dropped):
                dst.writestr(name, src.read(name))
        dst.writestr("competition.yaml", yaml.safe_dump(spec))
    return out


BROKEN = {
    "version must be 2": lambda s: s.update(version=1),
    "missing required key 'leaderboards'": lambda s: s.pop("leaderboards"),
    "phase private must start after phase public ends": lambda s: s["phases"][1].update(start=s["phases"][0]["start"]),
    "phase public must have an end date": lambda s: s["phases"][0].pop("end"),
    "phase private has no start date": lambda s: s["phases"][1].pop("start"),
    "phase public has no tasks": lambda s: s["phases"][0].update(tasks=[]),
    "points at unknown task 7": lambda s: s["phases"][1].update(tasks=[7]),
    "task 1 has no scoring program": lambda s: s["tasks"][1].pop("scoring_program"),
    "duplicate task index 0": lambda s: s["tasks"][1].update(index=0),
    "terms: 'pages/terms.md' is not in the bundle": {"pages/terms.md"},
    "task 0 reference_data: 'public/reference_data' is not in the bundle": {"public/reference_data/"},
    "scoring_program has no metadata.yaml": {"scoring_program/metadata.yaml"},
    "column 'final_score' has no index": lambda s: s["leaderboards"][0]["columns"][0].pop("index"),
    "the first phase cannot be an auto-migration target": lambda s: s["phases"][0].update(
        auto_migrate_to_this_phase=True
    ),
}


@pytest.mark.parametrize("problem", BROKEN)
def test_bundle_validation_names_what_codabench_would_refuse(bundle: Path, tmp_path: Path, problem: str) -> None:
    broken = rewrite(bundle, tmp_path / "broken.zip", BROKEN[problem])
    with pytest.raises(ChallengeError) as e:
        validate(broken)
    assert problem in str(e.value)


# One legit file and four hostile ones; a timeout's numbers are measured, so only its status must agree.
BOTH_WAYS = ["kaggle_inplace.py", "syntax_error.py", "raises.py", "wrong_architecture.py", "infinite_loop.py"]


@pytest.mark.slow  # about two minutes: every file scored twice, by both programs
def test_local_scorer_and_codabench_programs_give_the_same_verdicts_and_numbers(bundle: Path, tmp_path: Path) -> None:
    """Each file through `challenge score` and through the bundle's two programs (all side by side)."""
    from challenge.competition.phases import phase_config, phases
    from challenge.scoring.scorer import score_submission

    cfg = compose_config("competition", [*BUNDLE, f"competition.root={tmp_path}"], tmp_path / "local")
    public = phase_config(cfg, phases(cfg)[0])

    def codabench(name: str) -> tuple[dict | None, re.Match | None]:
        folder = tmp_path / "zip" / name
        folder.mkdir(parents=True)
        (folder / "submission.py").write_bytes((SUBMISSIONS / name).read_bytes())
        try:
            return try_task(bundle, 0, folder, tmp_path / "codabench" / name), None
        except ChallengeError as e:
            return None, re.search(
                r"scoring_program exited with status 1: rejected \((\w+)\): (.*?)(?: \((?:traceback in|see) |\(log:|$)",
                str(e),
            )

    with ThreadPoolExecutor(max_workers=4) as ex:
        locals_ = list(ex.map(lambda n: score_submission(public, SUBMISSIONS / n, tmp_path / "local" / n), BOTH_WAYS))
        remotes = list(ex.map(codabench, BOTH_WAYS))
    assert [r.status for r in locals_] == ["scored", "syntax_error", "raised", "wrong_architecture", "timeout"]
    for name, local, (scores, verdict) in zip(BOTH_WAYS, locals_, remotes):
        if local.scored:
            assert verdict is None and list(scores) == [k for k, _, _ in COLUMNS], name
            # scores.json is the local result's leaderboard row, column for column; a run's cost is measured, not
            # computed
            row = LeaderboardRow.from_result(name, local).scores()
            assert {k: v for k, v in scores.items() if k != "seconds_per_run"} == {
                k: v for k, v in row.items() if k != "seconds_per_run"
            }, name
            assert [scores["f_ci_low"], scores["f_ci_high"]] == local.score.forget_quality_ci, name
            assert not list(
                (tmp_path / "codabench" / name / "task-0" / "input" / "res").rglob("reference*")
            )  # the ingestion saw no reference data
        else:
            assert verdict is not None and verdict[1] == local.status, (name, local.message, verdict)
            if local.status != "timeout":
                assert local.message.startswith(verdict[2].strip()), (name, local.message, verdict[2])


def test_cli_flags_and_overrides_mix(tmp_path: Path) -> None:
    overrides = new_competition(tmp_path)
    r = run_cli(
        "submit", f"competition.root={tmp_path}", "--team", "owls", str(SUBMISSIONS / "raises.py"), *overrides[:-1]
    )
    assert r.returncode == 0 and "submission 1 queued" in r.stdout, r.stderr
    bad = run_cli("worker", "--folow", *overrides)
    assert (
        bad.returncode == 2 and bad.stderr == "error: unrecognized argument '--folow' (see `challenge worker --help`)\n"
    )
    help_text = run_cli("submit", "--help").stdout
    assert "--team" in help_text and "Hydra override" in help_text


# -- finalize's re-scoring of the leaders -------------------------------------------------------------------
RESCORE = ["competition.finalize.top_k=2", "competition.finalize.n_runs=4"]
STAND_IN_ACCURACIES = {"retain": 0.5, "forget": 0.3, "test": 0.4}


def test_finalize_rescores_the_leaders_at_a_larger_n_and_ranks_them_first(tmp_path: Path) -> None:
    """bats leads the private phase (stored numbers) but its file raises when scored again at N=4: the final
    ranking puts owls (the template, really scored with 4 runs against 4 retrained models) first, then bats,
    then cats (third: not re-scored). An interrupted finalize resumes: what was stored is not scored again."""
    from challenge.competition.phases import phase_config, phases
    from challenge.competition.rescoring import Rescoring, rescore
    from challenge.pool import write_stand_in

    overrides = [*new_competition(tmp_path), f"paths.cache_dir={tmp_path / 'cache'}", *FAST_WORKERS, *RESCORE]
    cfg = compose_config("competition", overrides, tmp_path / "out")
    all_phases = phases(cfg)
    for phase, n in zip(all_phases, (3, 4)):  # stand-in pools of their own (the private one at the re-scoring's N)
        write_stand_in(
            phase_config(cfg, phase), n, seconds=10.0, accuracies={"retain": 0.5, "forget": 0.3, "test": 0.4}
        )
    store = Store(tmp_path / "competition.db")
    check = in_transaction_checks(Limits(None, None))
    files = {"owls": TEMPLATE.read_bytes(), "bats": (SUBMISSIONS / "raises.py").read_bytes(), "cats": b"# c\n"}
    private = {"owls": 0.20, "bats": 0.30, "cats": 0.10}
    for team, content in files.items():
        sid = store.add(team, f"{team}.py", content, hashlib.sha256(content).hexdigest(), time.time(), check)
        store.claim("w", 60, 3)
        results = {p: fake_result(private[team], 0.5, (0.4, 0.6)) for p in ("public", "private")}
        store.finish(sid, "w", "scored", "scored", "scored on public, private", results)
    said: list[str] = []
    assert rescore(cfg, store, all_phases, Rescoring.from_config(cfg), said.append) == [2, 1]  # the private order
    rescored = store.results("private@4")
    assert {sid: (r.status, r.settings.n_runs, r.pool.models) for sid, r in rescored.items()} == {
        1: ("scored", 4, 4),
        2: ("raised", 4, 4),
    }
    assert store.last_event("finalize") is None  # not recorded until every leader is re-scored
    fin = run_cli("competition", "finalize", *overrides)
    assert fin.returncode == 0, fin.stderr
    assert "top 2 at N=4 (2 already done)" in fin.stdout
    final = fin.stdout[fin.stdout.index("final ranking (the private phase's top 2 scored again with N=4 runs)") :]
    assert final.index("owls") < final.index("bats") < final.index("cats")
    owls = next(line for line in final.splitlines() if "owls" in line)
    assert f"{rescored[1].score.final_score:.3f}" in owls  # its N=4 score, not the stored 0.200
    assert Store(tmp_path / "competition.db").last_event("finalize")[1] == {"rescored": "private@4", "ids": [2, 1]}


@pytest.mark.parametrize(
    "overrides, problem",
    [
        (["competition.finalize.top_k=-1"], "competition.finalize.top_k=-1 is not a count"),
        (["competition.finalize.top_k=2"], "competition.finalize.n_runs=null is not a number of runs"),
        (
            RESCORE[:1] + ["competition.finalize.n_runs=3"],
            "competition.finalize.n_runs=3 is not more than scorer.n_runs=3",
        ),
    ],
)
def test_finalize_refuses_a_rescoring_it_cannot_do_before_touching_the_store(
    overrides: list[str], problem: str, tmp_path: Path
) -> None:
    from challenge.competition.rescoring import Rescoring

    with pytest.raises(ChallengeError, match=re.escape(problem)):
        Rescoring.from_config(compose_config("competition", [*TINY, *overrides], tmp_path))


# -- a phase over several splits ------------------------------------------------------------------------------
SPLITS = ["competition.phases.private.splits=[1,2,3]"]


def test_a_phase_over_splits_ranks_by_the_mean_and_shows_ties_as_ties(tmp_path: Path) -> None:
    """owls and bats trade places split by split (a tie: rank =1 each), cats is below both on every split (3),
    newts failed on split 2 and so the competition; owls' second file was not its best public one."""
    overrides = [*new_competition(tmp_path), *SPLITS]
    store = Store(tmp_path / "competition.db")
    check = in_transaction_checks(Limits(None, None))
    entries = [
        ("owls", 0.30, [0.300, 0.330, 0.310]),
        ("bats", 0.28, [0.320, 0.300, 0.315]),
        ("cats", 0.25, [0.100, 0.120, 0.110]),
        ("owls", 0.10, [0.900, 0.900, 0.900]),  # better on the private splits, but not owls' best public file
        ("newts", 0.40, [0.500, None, None]),
    ]
    for i, (team, public, private) in enumerate(entries):
        sid = store.add(team, f"{team}_v{i}.py", f"# {i}".encode(), f"{i:064x}", time.time() + i, check)
        store.claim("w", 60, 3)
        results = {"public": fake_result(public, 0.5, (0.45, 0.55))}
        for seed, final in zip((1, 2, 3), private):
            part = f"private/split={seed}"
            results[part] = fake_result(final, 0.5, (0.49, 0.51)) if final is not None else rejected("raised", "boom")
            if final is None:
                break
        status = "scored" if None not in private else "failed"
        store.finish(sid, "w", status, "scored" if status == "scored" else "raised", "-", results)
    store.finalize()
    board = run_cli("leaderboard", "--html", str(tmp_path / "board.html"), *overrides)
    assert board.returncode == 0, board.stderr
    private = board.stdout[board.stdout.index("private phase") :]
    lines = {line.split()[2]: line.split() for line in private.splitlines() if line.strip().startswith(("=", "1", "3"))}
    assert private.index("Over 3 splits") < private.index("#1 owls_v0.py")
    assert lines["owls_v0.py"][0] == lines["bats_v1.py"][0] == "=1" and lines["cats_v2.py"][0] == "3"
    assert "owls_v3.py" not in private and "newts" not in private
    assert lines["owls_v0.py"][4] == f"{(0.30 + 0.33 + 0.31) / 3:.3f}"  # the mean over the splits
    page = (tmp_path / "board.html").read_text()
    assert "private phase (final ranking)" in page and page.index("owls_v0.py") < page.index("cats_v2.py")


@pytest.mark.slow  # three scorings (20 s); the over-splits table's own test is fast
def test_a_worker_scores_each_split_of_a_phase_in_its_own_folder(tmp_path: Path) -> None:
    """Stand-in pools for public and the private phase's two splits: the worker scores the file three times, each
    against its own pool, and stores each part under its name."""
    from challenge.competition.phases import part_configs, phases
    from challenge.competition.worker import run as work
    from challenge.pool import write_stand_in

    overrides = [
        *new_competition(tmp_path),
        f"paths.cache_dir={tmp_path / 'cache'}",
        *FAST_WORKERS,
        "competition.phases.private.splits=[1,2]",
    ]
    cfg = compose_config("competition", overrides, tmp_path / "out")
    parts = [pc for phase in phases(cfg) for pc in part_configs(cfg, phase)]
    pools = {name: write_stand_in(pcfg, 3, seconds=10.0, accuracies=STAND_IN_ACCURACIES) for name, pcfg in parts}
    assert list(pools) == ["public", "private/split=1", "private/split=2"]
    assert len({pool.fingerprint for pool in pools.values()}) == 3  # each split: its own forget set and pool
    queue(tmp_path / "competition.db", [("owls", "template.py", TEMPLATE.read_bytes())])
    assert work(cfg, follow=False, say=lambda _: None) == {"scored": 1}
    store = Store(tmp_path / "competition.db")
    for name, pool in pools.items():
        result = store.results(name)[1]
        assert result.status == "scored" and result.pool.fingerprint == pool.fingerprint
        assert (tmp_path / "submissions" / "1" / name / "result.json").is_file()
    assert store.get(1).message == "scored on public, private/split=1, private/split=2"


@pytest.mark.parametrize("value", ["[1]", "[1,1]", "[1,x]", "3", "[true,false]"])
def test_a_phase_whose_splits_are_not_two_or_more_seeds_is_one_line(value: str, tmp_path: Path) -> None:
    from challenge.competition.phases import phases

    cfg = compose_config("competition", [*TINY, f"competition.phases.private.splits={value}"], tmp_path)
    with pytest.raises(ChallengeError, match=r"competition\.phases\.private\.splits=.* is not a list of two or more"):
        phases(cfg)
