"""The sandbox mechanism with stdlib-only child scripts: what the child can see, and that limits hold."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from challenge.scoring import sandbox
from challenge.errors import ChallengeError
from challenge.scoring.sandbox import Limits, Outcome, Sandbox

HAVE_BWRAP = sandbox.bwrap_problem() is None
MODES = [pytest.param("bwrap", marks=pytest.mark.skipif(not HAVE_BWRAP, reason=f"bubblewrap unusable here: {sandbox.bwrap_problem()}")), "none"]
REPO = Path(__file__).resolve().parent.parent


def make_box(tmp_path: Path, isolation: str, limits: Limits | None = None) -> Sandbox:
    dirs = [tmp_path / d for d in ("inputs", "outputs", "scratch")]
    for d in dirs:
        d.mkdir(exist_ok=True)
    return Sandbox(*dirs, limits or Limits(), isolation)


def run_script(box: Sandbox, code: str, watchdog=lambda tree: None) -> tuple[Outcome, str, str]:
    """Run `code` as the child; return how it ended and its stdout and stderr."""
    script = box.inputs / "script.py"
    script.write_text(textwrap.dedent(code))
    logs = box.outputs.parent / "stdout.log", box.outputs.parent / "stderr.log"
    outcome = box.run([sys.executable, f"{box.inside(box.inputs)}/script.py"], *logs, watchdog)
    return outcome, logs[0].read_text(), logs[1].read_text()


def running(token: str) -> list[int]:
    """Pids of live processes whose command line holds `token`."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if token.encode() in (entry / "cmdline").read_bytes() and (entry / "stat").read_text().split(") ")[1][0] != "Z":
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
    outcome, out, err = run_script(box, f"""
        import os
        print(open("given.txt" if False else "{box.inside(box.inputs)}/given.txt").read())
        for path in [{str(secret)!r}, {str(REPO / ".cache")!r}, {str(REPO / "outputs")!r}, {str(REPO / "conf")!r}, "/etc/shadow", "/root/.netrc", "/home"]:
            print(path, os.path.exists(path))
        try:
            open("{box.inside(box.inputs)}/given.txt", "a")
        except OSError as e:
            print("inputs read-only:", e.errno)
        open("{box.inside(box.outputs)}/out.txt", "w").write("x")
        print("cwd", os.getcwd(), "home", os.environ["HOME"])
    """)
    assert outcome.returncode == 0, err
    assert "hello" in out
    assert "True" not in out.replace("hello", "")  # none of those paths exists inside
    assert "inputs read-only: 30" in out  # EROFS
    assert (box.outputs / "out.txt").read_text() == "x"
    assert "cwd /sandbox/scratch home /sandbox/scratch" in out


@pytest.mark.parametrize("isolation", MODES)
def test_no_network(tmp_path: Path, isolation: str) -> None:
    box = make_box(tmp_path, isolation)
    if isolation == "none" and box.net_prefix is None:
        pytest.skip("unshare cannot create a network namespace here")
    outcome, out, err = run_script(box, """
        import socket
        print(sorted(name for _, name in socket.if_nameindex()))
        try:
            socket.create_connection(("1.1.1.1", 53), timeout=3)
            print("connected")
        except OSError as e:
            print("blocked", e.errno)
    """)
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
    outcome, _, _ = run_script(make_box(tmp_path, isolation), f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "{token}"])
        time.sleep(600)
    """, watchdog=lambda tree: "over budget" if time.monotonic() > deadline else None)
    assert outcome.stopped == "over budget"
    assert outcome.seconds < 30
    assert running(token) == []


@pytest.mark.parametrize("isolation", MODES)
def test_flooding_is_capped_and_stopped(tmp_path: Path, isolation: str) -> None:
    box = make_box(tmp_path, isolation, Limits(log_cap_bytes=10_000))
    outcome, out, _ = run_script(box, """
        while True:
            print("x" * 1000, flush=True)
    """)
    assert outcome.flooded == "stdout"
    assert 10_000 <= len(out) < 10_100 and out.endswith("[output cut at 10000 bytes]\n")


@pytest.mark.parametrize("isolation", MODES)
def test_processes_left_behind_are_killed(tmp_path: Path, isolation: str) -> None:
    token = f"orphan-token-{os.getpid()}-{isolation}"
    outcome, _, err = run_script(make_box(tmp_path, isolation), f"""
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "{token}"])
    """)
    assert outcome.returncode == 0, err
    assert running(token) == []
    if isolation == "none":  # with bwrap the pid namespace dies with the child; the ingestion reports those
        assert len(outcome.leftovers) == 1


@pytest.mark.parametrize("isolation", MODES)
def test_memory_limit(tmp_path: Path, isolation: str) -> None:
    box = make_box(tmp_path, isolation, Limits(memory_mb=256))
    outcome, out, err = run_script(box, """
        try:
            hoard = bytearray(1 << 30)
            print("allocated")
        except MemoryError:
            print("refused")
    """)
    assert outcome.returncode == 0, err
    assert out.strip() == "refused"


@pytest.mark.parametrize("isolation", MODES)
def test_file_size_limit(tmp_path: Path, isolation: str) -> None:
    box = make_box(tmp_path, isolation, Limits(file_size_mb=1))
    outcome, out, err = run_script(box, f"""
        try:
            open("{box.inside(box.outputs)}/big.bin", "wb").write(b"x" * (2 << 20))
        except OSError as e:
            print("refused", e.errno)
    """)
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
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "bubblewrap is not installed")
    with pytest.raises(ChallengeError, match="isolation=bwrap but bubblewrap is not installed: install bubblewrap"):
        make_box(tmp_path, "bwrap")
    assert make_box(tmp_path, "auto").protections.isolation == "none (bubblewrap is not installed)"


def test_cgroup_v2_limit_is_written_and_joined(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a cgroup v2 with the memory controller is delegated to us (not on every machine)."""
    fake = tmp_path / "cgroup"
    fake.mkdir()
    monkeypatch.setattr(sandbox, "cgroup_parent", lambda: fake)
    created = []
    real = sandbox.MemoryCgroup.__init__

    def spy(self, parent: Path, limit_mb: int) -> None:
        real(self, parent, limit_mb)
        created.append(self.path)

    monkeypatch.setattr(sandbox.MemoryCgroup, "__init__", spy)
    box = make_box(tmp_path, "none", Limits(memory_mb=300))
    assert box.protections.memory == "cgroup v2 memory.max 300 MB"
    outcome, _, _ = run_script(box, "pass")
    assert outcome.returncode == 0
    assert (created[0] / "memory.max").read_text() == str(300 << 20)
    assert (created[0] / "cgroup.procs").read_text() == "0"  # the child moved itself in before exec
