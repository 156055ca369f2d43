"""The sandbox mechanism with stdlib-only child scripts: what the child can see, and that limits hold."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from challenge.errors import ChallengeError
from challenge.scoring.sandbox import Limits, Outcome, Sandbox, probe
from challenge.scoring.sandbox.cgroup import Cgroup
from challenge.scoring.settings import Settings

HAVE_BWRAP = probe.bwrap_problem() is None
MODES = [
    pytest.param(
        "bwrap", marks=pytest.mark.skipif(not HAVE_BWRAP, reason=f"bubblewrap unusable here: {probe.bwrap_problem()}")
    ),
    "none",
]
REPO = Path(__file__).resolve().parent.parent


def make_box(tmp_path: Path, isolation: str, limits: Limits | None = None) -> Sandbox:
    dirs = [tmp_path / d for d in ("inputs", "outputs", "scratch")]
    for d in dirs:
        d.mkdir(exist_ok=True)
    return Sandbox(*dirs, limits or Settings.default_limits(), isolation)


def run_script(box: Sandbox, code: str, watchdog=lambda tree: None, **run: Any) -> tuple[Outcome, str, str]:
    """Run `code` as the child (`run`: more arguments of Sandbox.run); return how it ended and its stdout and stderr."""
    script = box.inputs / "script.py"
    script.write_text(textwrap.dedent(code))
    logs = box.outputs.parent / "stdout.log", box.outputs.parent / "stderr.log"
    outcome = box.run([sys.executable, f"{box.inside(box.inputs)}/script.py"], *logs, watchdog, **run)
    return outcome, logs[0].read_text(), logs[1].read_text()


def running(token: str) -> list[int]:
    """Pids of live processes whose command line holds `token`."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if (
                token.encode() in (entry / "cmdline").read_bytes()
                and (entry / "stat").read_text().split(") ")[1][0] != "Z"
            ):
                pids.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return pids


@pytest.mark.skipif(not HAVE_BWRAP, reason="needs bubblewrap")
def test_child_sees_only_its_binds(tmp_path: Path) -> None:
    secret = tmp_path / "pools" / "abc" / "pool.json"  # stands for the pool, the test split, other submissions
    secret.parent.mkdir(parents=True)
    secret.write_text("{}")
    box = make_box(tmp_path, "bwrap")
    (box.inputs / "given.txt").write_text("hello")
    outcome, out, err = run_script(
        box,
        f"""
        import os
        print(open("given.txt" if False else "{box.inside(box.inputs)}/given.txt").read())
        for path in [{str(secret)!r}, {str(REPO / ".cache")!r}, {str(REPO / "outputs")!r}, {str(REPO / "conf")!r},
                     "/etc/shadow", "/root/.netrc", "/home"]:
            print(path, os.path.exists(path))
        try:
            open("{box.inside(box.inputs)}/given.txt", "a")
        except OSError as e:
            print("inputs read-only:", e.errno)
        open("{box.inside(box.outputs)}/out.txt", "w").write("x")
        print("cwd", os.getcwd(), "home", os.environ["HOME"])
    """,
    )
    assert outcome.returncode == 0, err
    assert "hello" in out
    assert "True" not in out.replace("hello", "")  # none of those paths exists inside
    assert (
        "inputs read-only: 30" in out or "inputs read-only: 13" in out
    )  # EROFS, or EACCES for a child with a uid of its own
    assert (box.outputs / "out.txt").read_text() == "x"
    assert "cwd /sandbox/scratch home /sandbox/scratch" in out


@pytest.mark.parametrize("isolation", MODES)
def test_no_network(tmp_path: Path, isolation: str) -> None:
    box = make_box(tmp_path, isolation)
    if isolation == "none" and box.net_prefix is None:
        pytest.skip("unshare cannot create a network namespace here")
    outcome, out, err = run_script(
        box,
        """
        import socket
        print(sorted(name for _, name in socket.if_nameindex()))
        try:
            socket.create_connection(("1.1.1.1", 53), timeout=3)
            print("connected")
        except OSError as e:
            print("blocked", e.errno)
    """,
    )
    assert outcome.returncode == 0, err
    assert "blocked" in out and "connected" not in out
    assert out.splitlines()[0] == "['lo']"
    assert "none (empty network namespace" in box.protections.network


@pytest.mark.parametrize("isolation", MODES)
def test_environment_is_clean(tmp_path: Path, isolation: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "do-not-leak")
    outcome, out, _ = run_script(make_box(tmp_path, isolation), "import os; print(sorted(os.environ))")
    assert outcome.returncode == 0
    assert "WANDB_API_KEY" not in out and "CHALLENGE_CACHE_DIR" not in out


@pytest.mark.parametrize("isolation", MODES)
def test_watchdog_kills_the_whole_process_group(tmp_path: Path, isolation: str) -> None:
    token = f"sleep-token-{os.getpid()}-{isolation}"
    deadline = time.monotonic() + 1.0
    outcome, _, _ = run_script(
        make_box(tmp_path, isolation),
        f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "{token}"])
        time.sleep(600)
    """,
        watchdog=lambda tree: "over budget" if time.monotonic() > deadline else None,
    )
    assert outcome.stopped == "over budget"
    assert outcome.seconds < 30
    assert running(token) == []


@pytest.mark.parametrize("isolation", MODES)
def test_a_byte_on_the_wake_pipe_has_the_watchdog_look_at_once(tmp_path: Path, isolation: str) -> None:
    """The watchdog looks every 5 s here; the child's byte on the pipe passed to it brings the second look at once."""
    read_end, write_end = os.pipe()
    looks: list[float] = []

    def watchdog(tree: object) -> str | None:
        looks.append(time.monotonic())
        return "woken" if len(looks) > 1 else None

    try:
        outcome, _, err = run_script(
            make_box(tmp_path, isolation),
            f"""
            import os, time
            time.sleep(0.2)
            os.write({write_end}, b"run over")
            time.sleep(600)
        """,
            watchdog,
            poll=5.0,
            pass_fds=(write_end,),
            wake_fd=read_end,
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    assert outcome.stopped == "woken", err
    assert outcome.seconds < 2


@pytest.mark.parametrize("isolation", MODES)
def test_a_wake_pipe_closed_by_every_writer_does_not_spin_the_watchdog(tmp_path: Path, isolation: str) -> None:
    """A pipe whose writers are all gone reads as ended at once, forever: the loop goes back to looking every `poll`."""
    read_end, write_end = os.pipe()
    looks: list[float] = []

    def watchdog(tree: object) -> str | None:
        if not looks:
            os.close(write_end)  # ours; the child closes its own
        looks.append(time.monotonic())
        return "enough" if looks[-1] - looks[0] > 1.5 else None

    outcome, _, err = run_script(
        make_box(tmp_path, isolation),
        f"""
        import os, time
        os.close({write_end})
        time.sleep(600)
    """,
        watchdog,
        poll=0.5,
        pass_fds=(write_end,),
        wake_fd=read_end,
    )
    os.close(read_end)
    assert outcome.stopped == "enough", err
    assert 3 <= len(looks) <= 6  # about one look per 0.5 s; a spin would look thousands of times


@pytest.mark.parametrize("isolation", MODES)
def test_flooding_is_capped_and_stopped(tmp_path: Path, isolation: str) -> None:
    box = make_box(tmp_path, isolation, Settings.default_limits(log_cap_bytes=10_000))
    outcome, out, _ = run_script(
        box,
        """
        while True:
            print("x" * 1000, flush=True)
    """,
    )
    assert outcome.flooded == "stdout"
    assert 10_000 <= len(out) < 10_100 and out.endswith("[output cut at 10000 bytes]\n")


@pytest.mark.parametrize("isolation", MODES)
def test_processes_left_behind_are_killed(tmp_path: Path, isolation: str) -> None:
    token = f"orphan-token-{os.getpid()}-{isolation}"
    outcome, _, err = run_script(
        make_box(tmp_path, isolation),
        f"""
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "{token}"])
    """,
    )
    assert outcome.returncode == 0, err
    assert running(token) == []
    if isolation == "none":  # with bwrap the pid namespace dies with the child; the ingestion reports those
        assert len(outcome.leftovers) == 1


@pytest.mark.parametrize("isolation", MODES)
def test_memory_limit(tmp_path: Path, isolation: str) -> None:
    box = make_box(tmp_path, isolation, Settings.default_limits(memory_mb=256))
    outcome, out, err = run_script(
        box,
        """
        try:
            hoard = bytearray(1 << 30)
            print("allocated")
        except MemoryError:
            print("refused")
    """,
    )
    assert outcome.returncode == 0, err
    assert out.strip() == "refused"


@pytest.mark.parametrize("isolation", MODES)
def test_file_size_limit(tmp_path: Path, isolation: str) -> None:
    box = make_box(tmp_path, isolation, Settings.default_limits(file_size_mb=1))
    outcome, out, err = run_script(
        box,
        f"""
        try:
            open("{box.inside(box.outputs)}/big.bin", "wb").write(b"x" * (2 << 20))
        except OSError as e:
            print("refused", e.errno)
    """,
    )
    assert outcome.returncode == 0, err
    assert out.strip() == "refused 27"  # EFBIG: Python ignores SIGXFSZ, so the write fails instead
    assert (box.outputs / "big.bin").stat().st_size <= 1 << 20


@pytest.mark.parametrize("isolation", MODES)
def test_crash_reports_the_signal(tmp_path: Path, isolation: str) -> None:
    outcome, _, _ = run_script(make_box(tmp_path, isolation), "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert outcome.signal == signal.SIGSEGV


def test_without_isolation_it_says_so(tmp_path: Path) -> None:
    p = make_box(tmp_path, "none").protections
    assert p.isolation.startswith("none") and "participant code can read your files" in p.filesystem


def test_bwrap_required_but_unusable_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "bwrap_problem", lambda: "bubblewrap is not installed")
    with pytest.raises(ChallengeError, match="isolation=bwrap but bubblewrap is not installed: install bubblewrap"):
        make_box(tmp_path, "bwrap")
    assert make_box(tmp_path, "auto").protections.isolation == "none (bubblewrap is not installed)"


def test_cgroup_v2_limits_are_written_and_joined(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a cgroup v2 with the memory and pids controllers is delegated to us (not on every machine)."""
    fake = tmp_path / "cgroup"
    fake.mkdir()
    (fake / "cgroup.subtree_control").write_text("memory pids\n")
    monkeypatch.setattr(probe, "cgroup_parent", lambda: fake)
    created = []
    real = Cgroup.__init__

    def spy(self, parent: Path, memory_mb: int | None, pids_max: int | None) -> None:
        real(self, parent, memory_mb, pids_max)
        created.append(self.path)

    monkeypatch.setattr(Cgroup, "__init__", spy)
    box = make_box(tmp_path, "none", Settings.default_limits(memory_mb=300, max_processes=40))
    assert box.protections.memory == "cgroup v2 memory.max 300 MB"
    assert box.protections.processes.startswith("at most 40 processes and threads (cgroup v2 pids.max)")
    outcome, _, _ = run_script(box, "pass")
    assert outcome.returncode == 0 and outcome.capped is None
    assert (created[0] / "memory.max").read_text() == str(300 << 20) and (created[0] / "pids.max").read_text() == "40"
    assert (created[0] / "cgroup.procs").read_text() == "0"  # the child moved itself in before exec


# -- the caps on what one child can take from the others -------------------------------------------
def host_state() -> dict[str, float]:
    """What a cap protects: the host's free memory and disk (MB) and its process count."""
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    disk = os.statvfs("/tmp")
    return {
        "free_memory_mb": int(meminfo["MemAvailable"].split()[0]) / 1024,
        "free_disk_mb": disk.f_bavail * disk.f_frsize / 2**20,
        "processes": len(list(Path("/proc").glob("[0-9]*"))),
    }


def settled(before: dict[str, float], timeout: float = 10.0) -> dict[str, float]:
    """The host's state once killed processes are reaped (their zombies count in /proc a moment longer)."""
    deadline = time.monotonic() + timeout
    while (now := host_state())["processes"] > before["processes"] + 10 and time.monotonic() < deadline:
        time.sleep(0.1)
    return now


def report(name: str, before: dict[str, float], after: dict[str, float]) -> None:
    print(f"{name}: " + ", ".join(f"{k} {before[k]:.0f} -> {after[k]:.0f}" for k in before))


SLOW_NONE = [
    pytest.param("bwrap", marks=pytest.mark.skipif(not HAVE_BWRAP, reason="needs bubblewrap")),
    pytest.param("none", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("isolation", SLOW_NONE)
def test_a_process_bomb_stops_at_the_cap_and_leaves_nothing(tmp_path: Path, isolation: str) -> None:
    """At most 300 sleeping processes even without a cap; with one, forks fail at 24 and the child is stopped."""
    token = f"61.{os.getpid() % 1000:03d}"  # sleep's argument: names the bomb's processes in /proc
    before = host_state()
    outcome, out, err = run_script(
        make_box(tmp_path, isolation, Settings.default_limits(max_processes=24)),
        f"""
        import os, time
        refused = 0
        for _ in range(300):
            try:
                if os.fork() == 0:
                    os.execv("/bin/sleep", ["sleep", "{token}"])
            except OSError:
                refused += 1
        print("refused", refused, flush=True)
        time.sleep(30)
    """,
    )
    after = settled(before)
    report(f"process bomb [{isolation}]", before, after)
    assert (outcome.capped, outcome.capped_detail) == ("processes", "reached 24 processes and threads at once"), err
    assert outcome.seconds < 10
    assert running(token) == []


@pytest.mark.skipif(not HAVE_BWRAP, reason="the private /tmp needs bubblewrap")
def test_filling_tmp_stops_at_the_cap_and_frees_it(tmp_path: Path) -> None:
    """/tmp is a tmpfs of scratch_mb (RAM): the filler gets ENOSPC at 32 MB (it stops at 48 MB), swallows it, and is
    stopped.
    """
    before = host_state()
    box = make_box(tmp_path, "bwrap", Settings.default_limits(scratch_mb=32))
    outcome, out, err = run_script(
        box,
        """
        import time
        written = 0
        try:
            with open("/tmp/filler", "wb") as f:
                while written < 48 << 20:
                    f.write(b"x" * (1 << 20))
                    f.flush()
                    written += 1 << 20
        except OSError as e:
            print("refused", e.errno, "at", written >> 20, "MB", flush=True)
        time.sleep(30)
    """,
    )
    after = settled(before)
    report("/tmp filler", before, after)
    assert "refused 28" in out, (out, err)  # ENOSPC, at the cap
    assert (outcome.capped, outcome.capped_detail) == ("disk", "filled /tmp (32 MB)")
    assert outcome.seconds < 10


@pytest.mark.parametrize("isolation", SLOW_NONE)
def test_filling_the_outputs_disk_stops_at_the_cap(tmp_path: Path, isolation: str) -> None:
    """The outputs folder is on the host's disk: the watchdog stops the child past scratch_mb (the filler stops at
    48 MB)."""
    before = host_state()
    box = make_box(tmp_path, isolation, Settings.default_limits(scratch_mb=16))
    outcome, _, err = run_script(
        box,
        f"""
        import time
        for i in range(48):
            with open("{box.inside(box.outputs)}/filler-%d" % i, "wb") as f:
                f.write(b"x" * (1 << 20))
            time.sleep(0.02)
        time.sleep(30)
    """,
    )
    after = settled(before)
    report(f"disk filler [{isolation}]", before, after)
    assert outcome.capped == "disk" and "more than the 16 MB it may hold" in outcome.capped_detail, err
    assert sum(f.stat().st_size for f in box.outputs.iterdir()) < 40 << 20
    assert all(f.stat().st_uid == os.getuid() for f in box.outputs.iterdir())  # the child owns nothing once it is gone


@pytest.mark.parametrize(
    "isolation", [pytest.param("none"), pytest.param("bwrap", marks=[pytest.mark.slow, MODES[0].marks[0]])]
)
def test_a_detached_cpu_hog_dies(tmp_path: Path, isolation: str) -> None:
    """A process in a session of its own, left running when the child exits: outside the watchdog's reach
    without a pid namespace, so RLIMIT_CPU kills it (1 s here; it would give up after 30 s by itself)."""
    token = f"hog-token-{os.getpid()}-{isolation}"
    before = host_state()
    outcome, _, err = run_script(
        make_box(tmp_path, isolation, Settings.default_limits(cpu_seconds=1)),
        f"""
        import subprocess, sys
        spin = "import time; end = time.time() + 30; all(iter(lambda: time.time() < end, False))"
        subprocess.Popen([sys.executable, "-c", spin, "{token}"], start_new_session=True)
    """,
    )
    assert outcome.returncode == 0, err
    deadline = time.monotonic() + 15
    while running(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    report(f"detached CPU hog [{isolation}]", before, settled(before))
    assert running(token) == []


def test_the_sandbox_lines_name_every_cap(tmp_path: Path) -> None:
    d = make_box(tmp_path, "auto").protections.to_dict()
    assert {"identity", "processes", "memory", "scratch", "disk", "cpu", "file_size", "missing"} <= set(d)
    assert all(d[k] for k in d)


def test_bwrap_required_but_a_cap_missing_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root without a user namespace of our own (e.g. util-linux missing), the child would be root: no process
    cap."""
    if not HAVE_BWRAP or os.geteuid() != 0:
        pytest.skip("needs bubblewrap and root")
    monkeypatch.setattr(probe, "userns_problem", lambda: "setpriv not installed (util-linux)")
    monkeypatch.setattr(probe, "cgroup_parent", lambda: None)
    with pytest.raises(
        ChallengeError, match=r"isolation=bwrap but this machine cannot cap processes \(the child runs as root"
    ):
        make_box(tmp_path, "bwrap")
    p = make_box(tmp_path, "auto").protections
    assert p.processes.startswith("not capped by the kernel") and "processes (the child runs as root" in p.missing[0]
