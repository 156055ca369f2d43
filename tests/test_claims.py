"""Pool claims: flock'd leases that a dead owner gives up and that only their holder deletes.

Every test here runs real processes on a real folder. Workers are forked from a process that has
already imported the kit (one launcher started with Popen, or this one), rather than started one
by one, because importing `challenge.pool` (torch, lightning) costs seconds of CPU per process;
forked, they share nothing but the folder: each opens and locks its claim files itself.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from challenge.pool import Claim, Pool, read_entry

# argv: mode, a JSON object of arguments, a log folder. The launcher forks argv["workers"] workers,
# which wait for log/start and then run the mode; each logs one JSON line per event to a file
# opened with O_APPEND (one write per line, so the lines of concurrent workers never interleave).
LAUNCHER = r"""
import json, os, sys, time, traceback
from pathlib import Path

import numpy as np

from challenge import pool as P

mode, args, logs = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])


def log(name, **record):
    fd = os.open(logs / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (json.dumps({"pid": os.getpid(), **record}) + "\n").encode())
    finally:
        os.close(fd)


# Instrumentation: every claim file deleted, with the inode at its path at that moment and the
# inode of the fd that the deleting Claim holds (None when the deletion is not part of a release).
releasing = []
_release = P.Claim.release


def release(self):
    releasing.append(self._fd)
    try:
        _release(self)
    finally:
        releasing.pop()


_unlink = os.unlink


def unlink(path, *a, **kw):  # Path.unlink goes through os.unlink as well
    if str(path).endswith(".claim"):
        try:
            at_path = os.stat(path).st_ino
        except FileNotFoundError:
            at_path = None
        fd = releasing[-1] if releasing else None
        log("deletions.jsonl", path=str(path), at_path=at_path, held=os.fstat(fd).st_ino if fd is not None else None)
    return _unlink(path, *a, **kw)


P.Claim.release, os.unlink = release, unlink


def fill_pool():
    pool = P.Pool(Path(args["root"]), args["config"])
    metrics = {part: {"acc": 0.5} for part in ("retain", "forget", "test")}
    wait_for_start()
    for (seed,) in P.claims(pool, args["n"]):
        time.sleep(0.002 + 0.004 * np.random.default_rng([os.getpid(), seed]).random())  # "training"
        pool.commit(P.make_entry(seed, 0.005, metrics, np.full(8, float(seed))))
        log("trained.jsonl", seed=seed)


def hammer():
    path, inside = Path(args["claim"]), Path(args["claim"] + ".inside")
    acquired = overlaps = orphans = 0
    wait_for_start()
    deadline = time.monotonic() + args["seconds"]
    while time.monotonic() < deadline:
        claim = P.Claim(path)
        if not claim.acquire():
            continue
        acquired += 1
        try:
            os.close(os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            overlaps += 1  # someone else believes they hold the claim too
        else:
            os.remove(inside)
        try:  # a lock on a file that the path no longer names leaves the claim free for others
            orphans += os.stat(path).st_ino != os.fstat(claim._fd).st_ino
        except FileNotFoundError:
            orphans += 1
        claim.release()
    log("hammer.jsonl", acquired=acquired, overlaps=overlaps, orphans=orphans)


def wait_for_start():
    while not (logs / "start").exists():
        time.sleep(0.0005)


children = []
for _ in range(args["workers"]):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            {"fill_pool": fill_pool, "hammer": hammer}[mode]()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    children.append(pid)
(logs / "start").touch()  # all forked and waiting: go
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
print(json.dumps({"workers": children, "codes": codes}))
sys.exit(0 if codes == [0] * len(codes) else 1)
"""


def _launch(mode: str, args: dict, logs: Path) -> tuple[list[int], dict[str, list[dict]]]:
    logs.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        [sys.executable, "-c", LAUNCHER, mode, json.dumps(args), str(logs)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr
    workers = json.loads(r.stdout.strip().splitlines()[-1])["workers"]
    records = {p.stem: [json.loads(line) for line in p.read_text().splitlines()] for p in logs.glob("*.jsonl")}
    return workers, records


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: its pid now names no live process
    return proc.pid


def _fork_holder(path: Path) -> int:
    """A process that takes the claim and keeps it until killed (forked: this one has imported the kit)."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # plain system calls only (no torch), and never back into pytest
        try:
            os.close(ready_r)
            os.write(ready_w, b"1" if Claim(path).acquire() else b"0")
            time.sleep(600)
        finally:
            os._exit(1)
    os.close(ready_w)
    try:
        ready, _, _ = select.select([ready_r], [], [], 30)
        assert ready and os.read(ready_r, 1) == b"1", "the holder did not get the claim"
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(ready_r)
    return pid


def _plant_stale(path: Path) -> int:
    """A claim file as its owner left it when it was killed: written, and locked by no one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "time": 0}))
    return path.stat().st_ino


def test_a_claim_is_exclusive_until_its_owner_dies(tmp_path: Path) -> None:
    path = tmp_path / "x.claim"
    first, second = Claim(path), Claim(path)
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert not path.exists()
    with Claim(path) as held:
        assert held and json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()

    # Held by another live process, until that process is killed: the kernel drops its lock.
    holder = _fork_holder(path)
    try:
        assert not Claim(path).acquire()
    finally:
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)
    assert json.loads(path.read_text())["pid"] == holder  # left behind, as a killed owner leaves it
    with Claim(path) as held:
        assert held and json.loads(path.read_text())["pid"] == os.getpid()

    # Planted by a dead process and locked by no one: taken over in place, not deleted and recreated.
    planted = tmp_path / "y.claim"
    inode = _plant_stale(planted)
    taker = Claim(planted)
    assert taker.acquire()
    assert planted.stat().st_ino == inode
    assert json.loads(planted.read_text())["pid"] == os.getpid()
    assert not Claim(planted).acquire()
    taker.release()
    assert not planted.exists()


def test_four_workers_train_every_seed_once_and_delete_only_the_claims_they_hold(tmp_path: Path) -> None:
    pool = Pool(tmp_path / "pool", {"first_seed": 1000, "purpose": "claim race test"})
    pool.create()
    seeds = pool.seeds(16)
    stale = {seed: _plant_stale(pool.claim_path(f"seed-{seed:06d}")) for seed in seeds[::3]}

    args = {"root": str(pool.root), "config": pool.config, "n": len(seeds), "workers": 4}
    workers, logs = _launch("fill_pool", args, tmp_path / "logs")

    trained = Counter(r["seed"] for r in logs["trained"])
    assert sorted(trained) == seeds and set(trained.values()) == {1}, trained  # each seed exactly once
    assert len({r["pid"] for r in logs["trained"]}) > 1  # the workers did run side by side
    assert {r["pid"] for r in logs["trained"]} <= set(workers)
    entries = [read_entry(pool.entry_path(seed)) for seed in seeds]
    assert all(e is not None for e in entries) and [e.seed for e in entries] == seeds
    assert not list((pool.root / "models").glob(".*.tmp"))
    assert list((pool.root / "claims").iterdir()) == []  # every claim released, the stale ones too

    deletions = logs["deletions"]
    assert len(deletions) >= len(seeds)
    wrong = [d for d in deletions if d["held"] is None or d["at_path"] != d["held"]]
    assert wrong == [], wrong  # no one deleted a claim file that was not the one it held
    deleted = {(Path(d["path"]).name, d["held"]) for d in deletions}
    assert all(
        (f"seed-{seed:06d}.claim", inode) in deleted for seed, inode in stale.items()
    )  # taken over, then released


@pytest.mark.slow  # about 30 s of racing processes; test_claims_are_exclusive_across_processes stays fast
def test_claimants_racing_on_one_claim_are_never_inside_together(tmp_path: Path) -> None:
    # Taking, holding and releasing one claim in a tight loop makes the window between a loser's
    # open and its lock, during which the holder unlinks the file, come up many times a second.
    path = tmp_path / "claims" / "hot.claim"
    _, logs = _launch("hammer", {"claim": str(path), "seconds": 1.0, "workers": 4}, tmp_path / "logs")
    results = logs["hammer"]
    assert len(results) == 4
    assert sum(r["overlaps"] + r["orphans"] for r in results) == 0, results
    assert sum(r["acquired"] for r in results) > 100, results
    assert all(d["at_path"] == d["held"] is not None for d in logs["deletions"])
    assert not path.exists()
