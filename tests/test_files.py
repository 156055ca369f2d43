"""The shared file helpers: flocks between processes, and reads of a child's files that never read a giant whole."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
import time
import tracemalloc
from pathlib import Path

from challenge.files import locked, read_regular, try_lock
from challenge.scoring.budget import read_calibration
from challenge.scoring.judge import read_failure, read_record

MALFORMED = ("crashed", "the submission's process wrote a malformed failure report")
GIANT = 50 << 20


def giant(path: Path) -> Path:
    """A 50 MB file (sparse: it costs no disk) where the child should have left a small JSON file."""
    with open(path, "wb") as f:
        f.truncate(GIANT)
    return path


def test_a_giant_or_a_fifo_left_for_a_report_is_malformed_and_never_read_whole(tmp_path: Path) -> None:
    calibration = {
        "clock": "cpu",
        "per_step_seconds": 0.01,
        "steps_timed": 5,
        "steps_per_retrain": 100,
        "retrain_seconds": 1.0,
    }
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "failure.json").write_text(json.dumps({"status": "raised", "message": "boom\nline 2"}))
    (tmp_path / "ok" / "run.json").write_text(json.dumps({"index": 3, "seconds": 1.5}))
    (tmp_path / "ok" / "calibration.json").write_text(json.dumps(calibration))
    # the same readers give the small files' contents: what follows is not a reader that refuses everything
    assert read_failure(tmp_path / "ok" / "failure.json") == ("raised", "boom")
    assert read_record(tmp_path / "ok" / "run.json", 3, ("seconds",)) == {"seconds": 1.5}
    assert read_calibration(tmp_path / "ok" / "calibration.json") == calibration

    names = ("failure.json", "run.json", "calibration.json")
    tracemalloc.start()
    started = time.perf_counter()
    try:
        read = (
            read_failure(giant(tmp_path / names[0])),
            read_record(giant(tmp_path / names[1]), 3, ("seconds",)),
            read_calibration(giant(tmp_path / names[2])),
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert read == (MALFORMED, None, None)
    assert peak < 1 << 20, f"{peak} bytes allocated to read three 50 MB files"  # reading one whole takes 50 MB
    assert time.perf_counter() - started < 5

    for name in names:
        (tmp_path / name).unlink()
        os.mkfifo(tmp_path / name)  # nobody writes: a plain open would block for ever
    assert (
        read_failure(tmp_path / names[0]),
        read_record(tmp_path / names[1], 3, ("seconds",)),
        read_calibration(tmp_path / names[2]),
    ) == (MALFORMED, None, None)


def test_read_regular_gives_at_most_max_bytes(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 10)
    os.symlink(tmp_path / "f", tmp_path / "link")
    assert [read_regular(tmp_path / "f", n) for n in (10, 9)] == [b"x" * 10, None]
    assert read_regular(tmp_path / "link", 10) is None


def test_try_lock_is_refused_while_held_and_free_once_the_holder_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "slot"
    mine = try_lock(path, mode=0o600)
    assert mine is not None and fcntl.fcntl(mine, fcntl.F_GETFD) & fcntl.FD_CLOEXEC  # an exec'd program cannot keep it
    assert (path.stat().st_mode & 0o777, try_lock(path)) == (0o600, None)  # another open file: refused, not waited for
    os.close(mine)

    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the holder: takes the lock, says so, and waits to be killed
        held = try_lock(path)
        os.write(ready_w, b"1" if held is not None else b"0")
        time.sleep(60)
        os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"1"
        assert try_lock(path) is None
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    again = try_lock(path)  # the kernel dropped the dead holder's lock
    assert again is not None
    os.close(again)


def test_locked_waits_for_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    held = try_lock(path)
    assert held is not None
    got: list[float] = []

    def wait_for_it() -> None:
        with locked(path):
            got.append(time.monotonic())

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    time.sleep(0.3)
    assert got == []  # still waiting
    released = time.monotonic()
    os.close(held)
    waiter.join(timeout=10)
    assert len(got) == 1 and got[0] >= released
    after = try_lock(path)  # and let go after the block
    assert after is not None
    os.close(after)


def test_two_threads_writing_one_file_each_rename_their_own_whole_copy(tmp_path: Path) -> None:
    """Two scorings in one process can write the same cache file at once (the original's confidences): both are
    inside their writer together here, and each must still rename a whole file of its own over the target."""
    import numpy as np

    from challenge.files import write_with

    target, both_inside = tmp_path / "cache.npy", threading.Barrier(2)
    failures: list[BaseException] = []

    def write(value: float) -> None:
        def save(tmp: Path) -> None:
            np.save(tmp, np.full(1000, value))
            both_inside.wait(timeout=10)

        try:
            write_with(target, save)
        except BaseException as e:  # noqa: BLE001 - what the test reports
            failures.append(e)

    threads = [threading.Thread(target=write, args=(v,)) for v in (1.0, 2.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and np.load(target).tolist() in ([1.0] * 1000, [2.0] * 1000)
    assert [p.name for p in tmp_path.iterdir()] == ["cache.npy"]  # no temporary file left behind
