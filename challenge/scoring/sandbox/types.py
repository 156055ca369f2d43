"""What both sides of the sandbox share: the limits asked for, what is enforced, how the child ended, and the names
the child finds inside. Plain data that imports nothing of the mechanism, so that the settings, the judge and the
child (which runs inside) can import it alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from challenge.scoring.gpu import CPU_LINE
from challenge.scoring.protocol import PIDNS_ENV  # one name for both sides (re-exported)

__all__ = ["INNER_ID", "INSIDE", "ISOLATION_MODES", "KAGGLE_SCRATCH", "PIDNS_ENV", "Limits", "Outcome", "Protections"]

ISOLATION_MODES = ("auto", "bwrap", "none")
INSIDE = Path("/sandbox")  # where inputs, outputs and scratch appear inside the mount namespace
# Kaggle notebooks of 2023 wrote scratch files here; inside bubblewrap both are folders of the scratch.
KAGGLE_SCRATCH = {"/kaggle/working": ".kaggle/working", "/kaggle/tmp": ".kaggle/tmp"}
INNER_ID = 1000  # the child's uid and gid inside its user namespace


@dataclass(frozen=True)
class Limits:
    """What one child may use; None switches a limit off. The scorer's defaults are written once, in
    challenge.scoring.settings (`Settings.default_limits`), which imports this module, not the other way."""

    memory_mb: int | None
    file_size_mb: int | None
    log_cap_bytes: int
    max_processes: int | None  # processes and threads at once, bubblewrap's own two included
    scratch_mb: int | None  # each RAM-backed folder (/tmp, /dev/shm, the working folder); also the outputs' disk
    cpu_seconds: int | None = None  # RLIMIT_CPU per process (the supervisor sets it once the budget is known)


@dataclass(frozen=True)
class Protections:
    """What the kernel really enforces for the child on this machine, said plainly."""

    isolation: str  # "bubblewrap", or "none (why)"
    filesystem: str
    network: str
    processes: str
    memory: str
    file_size: str
    identity: str = ""
    scratch: str = ""
    disk: str = ""
    cpu: str = ""
    missing: tuple[str, ...] = ()  # the caps this machine cannot give (scorer.isolation=bwrap refuses to run then)
    device: str = CPU_LINE  # the device the child runs on, and what of the host it takes (challenge.scoring.gpu)

    def to_dict(self) -> dict[str, str]:
        d = asdict(self)
        d["missing"] = "; ".join(self.missing) or "none"
        return d


@dataclass(frozen=True)
class Outcome:
    """How the child ended. `stopped` is the watchdog's reason when it had the child killed."""

    returncode: int
    signal: int | None  # the signal that ended the child's main process, if any
    stopped: str | None
    flooded: str | None  # "stdout" or "stderr" when that stream went over the cap
    leftovers: list[str]  # processes still running after the child exited (killed)
    oom_killed: bool
    seconds: float
    capped: str | None = None  # the resource whose cap stopped the child: "processes" or "disk"
    capped_detail: str | None = None  # what was seen, as the end of a sentence ("ran 64 processes and threads at once")
