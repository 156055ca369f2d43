"""What this machine lets the sandbox use, each probed once with the real thing: bubblewrap and its options,
an empty network namespace without it, a delegated cgroup v2, and (as root) a user namespace of our own.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from challenge.errors import ChallengeError
from challenge.scoring.sandbox.identity import HostUid, drop_to, make_userns
from challenge.scoring.sandbox.types import INNER_ID

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What the dynamic loader and Python's stdlib read from /etc; nothing secret (no shadow, no ssh).
ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "nsswitch.conf",
    "passwd",
    "group",
    "hosts",
    "fonts",
)
NAMESPACES = [
    "--unshare-net",
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    "--die-with-parent",
    "--new-session",
    "--cap-drop",
    "ALL",
]


def system_binds() -> list[str]:
    """The OS directories as on the host: symlinks stay symlinks (merged /usr), dirs are bound read-only."""
    args: list[str] = []
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    for name in ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


@functools.lru_cache(maxsize=None)
def bwrap_problem() -> str | None:
    """None when bubblewrap can build our namespaces here, else why not (one line)."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap is not installed"
    probe = [exe, *system_binds(), "--proc", "/proc", "--dev", "/dev", *NAMESPACES, "true"]
    try:
        r = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bubblewrap did not start ({e})"
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        return f"bubblewrap cannot create namespaces here ({last})"
    return None


@functools.lru_cache(maxsize=None)
def unshare_net_prefix() -> tuple[str, ...] | None:
    """A command prefix that starts the child in an empty network namespace, if the OS lets us."""
    exe = shutil.which("unshare")
    if exe is None:
        return None
    for flags in (("--net",), ("--user", "--map-root-user", "--net")):
        try:
            if subprocess.run([exe, *flags, "true"], capture_output=True, timeout=30).returncode == 0:
                return (exe, *flags, "--")
        except (OSError, subprocess.TimeoutExpired):
            return None
    return None


@functools.lru_cache(maxsize=None)
def cgroup_parent() -> Path | None:
    """A cgroup v2 directory where we may create children with a memory or pids limit, else None.

    That needs the unified hierarchy, the controller enabled for our cgroup's children, and write
    access (a delegated cgroup, or root of a container's cgroup namespace).
    """
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    rel = next((line[3:] for line in lines if line.startswith("0::")), None)
    if rel is None:
        return None
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        own = root / rel.lstrip("/")
        if cgroup_controllers(own) & {"memory", "pids"} and os.access(own, os.W_OK):
            return own
    return None


def cgroup_controllers(parent: Path) -> frozenset[str]:
    """The controllers a cgroup hands to its children (what our child cgroup can limit)."""
    try:
        return frozenset((parent / "cgroup.subtree_control").read_text().split())
    except OSError:
        return frozenset()


@functools.lru_cache(maxsize=None)
def bwrap_options() -> frozenset[str]:
    """The options this bubblewrap knows (`--size` came in 0.7, `--disable-userns` in 0.8)."""
    try:
        text = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(word for word in text.split() if word.startswith("--"))


@functools.lru_cache(maxsize=None)
def userns_problem() -> str | None:
    """None when, as root, we can run a child as a dedicated uid in a user namespace of its own; else why not.

    Probed once with the real thing: a namespace of our making, bubblewrap joining it, setpriv dropping to the uid.
    """
    if os.geteuid() != 0:
        return "the scorer is not root"
    missing = [tool for tool in ("unshare", "setpriv") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (util-linux)"
    try:
        with HostUid() as uid:
            fd = make_userns(uid)
            try:
                probe = [
                    "bwrap",
                    "--userns",
                    str(fd),
                    *system_binds(),
                    "--proc",
                    "/proc",
                    "--dev",
                    "/dev",
                    *NAMESPACES[:-2],
                    "--cap-drop",
                    "ALL",
                    "--cap-add",
                    "CAP_SETUID",
                    "--cap-add",
                    "CAP_SETGID",
                    "--",
                    *drop_to(INNER_ID),
                    "true",
                ]
                r = subprocess.run(probe, pass_fds=[fd], capture_output=True, text=True, timeout=60)
            finally:
                os.close(fd)
    except (OSError, ChallengeError, subprocess.TimeoutExpired) as e:
        return f"no user namespace of our own ({e})"
    if r.returncode != 0:
        return (
            f"no user namespace of our own ({(r.stderr.strip().splitlines() or [f'exit status {r.returncode}'])[-1]})"
        )
    return None
