"""Who the child is when the scorer runs as root: a host uid that only this child has, mapped to INNER_ID in a
user namespace of its own, since the kernel exempts root from RLIMIT_NPROC and lets it signal everything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from challenge.errors import ChallengeError
from challenge.files import try_lock
from challenge.scoring.processes import kill_uid
from challenge.scoring.sandbox.types import INNER_ID

# Host uids for children of a root scorer: far above any real account, one per running child (a file lock each).
UID_BASE, UID_SLOTS = 2_000_000_000, 4096
UID_LOCKS = (
    Path("/run/challenge-sandbox-uids")
    if os.path.isdir("/run") and os.access("/run", os.W_OK)
    else Path("/tmp/challenge-sandbox-uids")
)


class HostUid:
    """A host uid that no other running child has, held by a file lock: a crashed scorer frees it.

    RLIMIT_NPROC counts a uid's processes, so the cap is per child only if the uid is. What an earlier
    holder left running under it is killed on the way in, and all of it again on the way out.
    """

    def __init__(self) -> None:
        self.uid, self._fd = -1, -1

    def __enter__(self) -> int:
        UID_LOCKS.mkdir(mode=0o700, parents=True, exist_ok=True)
        start = (os.getpid() * 7919 + time.monotonic_ns()) % UID_SLOTS  # spread parallel scorers over the range
        for slot in ((start + i) % UID_SLOTS for i in range(UID_SLOTS)):
            fd = try_lock(UID_LOCKS / str(slot), mode=0o600)
            if fd is None:
                continue
            self.uid, self._fd = UID_BASE + slot, fd
            kill_uid(self.uid)
            return self.uid
        raise ChallengeError(f"all {UID_SLOTS} sandbox uids from {UID_BASE} are in use: fewer scorers at once")

    def leftovers(self) -> list[str]:
        return kill_uid(self.uid) if self.uid >= 0 else []

    def __exit__(self, *exc: object) -> None:
        if self._fd >= 0:
            kill_uid(self.uid)
            os.close(self._fd)
            self._fd = -1


class NoUid:
    """HostUid's stand-in where the child keeps the scorer's uid."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def make_userns(uid: int) -> int:
    """An fd of a new user namespace mapping INNER_ID to host `uid` (and 0 to 0, so that bubblewrap, still
    root in there, can bind what root can read), in which no further user namespace can be made."""
    # sh is exec'ed again once the map is written: capabilities in the namespace come with an exec as its uid 0.
    script = "echo; read _ && exec sh -c 'echo 0 > /proc/sys/user/max_user_namespaces && echo ok && read _'"
    helper = subprocess.Popen(
        ["unshare", "--user", "--", "sh", "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        helper.stdout.readline()  # the namespace exists
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{helper.pid}/{name}").write_text(f"0 0 1\n{INNER_ID} {uid} 1\n")
        helper.stdin.write(b"\n")
        helper.stdin.flush()
        if helper.stdout.readline().strip() != b"ok":
            raise OSError("cannot forbid nested user namespaces in it")
        return os.open(f"/proc/{helper.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        helper.kill()
        helper.wait()


def drop_to(inner: int) -> list[str]:
    """setpriv: the uid and gid `inner` of the child's namespace, no groups, no capabilities left to regain."""
    return [
        shutil.which("setpriv") or "setpriv",
        f"--reuid={inner}",
        f"--regid={inner}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]
