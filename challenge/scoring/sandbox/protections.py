"""The sandbox's lines in result.json: what the kernel enforces for the child on this machine, and the caps it
cannot give (`missing`), said plainly rather than silently dropped.
"""

from __future__ import annotations

import os

import challenge.scoring.sandbox.probe as probe
from challenge.scoring import gpu as gpus
from challenge.scoring.sandbox.caps import CHECK_EVERY
from challenge.scoring.sandbox.command import Setup
from challenge.scoring.sandbox.identity import UID_BASE
from challenge.scoring.sandbox.types import INNER_ID, Protections


def protections(box: Setup, problem: str | None) -> Protections:
    """`problem`: why the child is a plain process (bubblewrap unusable, or not asked for); None under bubblewrap."""
    device = gpus.CPU_LINE if box.gpu is None else box.gpu.line(box.bwrap)
    mb, fs = box.limits.memory_mb, box.limits.file_size_mb
    if mb is None:
        memory = "unlimited"
    else:
        memory = (
            f"cgroup v2 memory.max {mb} MB"
            if box.cgroup_memory
            else f"RLIMIT_DATA {mb} MB per process (no cgroup v2 memory controller to delegate)"
        )
    file_size = f"RLIMIT_FSIZE {fs} MB per file" if fs else "unlimited"
    processes, missing = _process_cap(box)
    identity, id_missing = _identity(box)
    scratch, scratch_missing = _scratch_cap(box)
    missing = [*missing, *id_missing, *scratch_missing]
    disk = (
        f"the outputs folder may hold {box.limits.scratch_mb} MB besides the runs' weights (polled every "
        f"{CHECK_EVERY:g} s); nothing else of the host's disk is writable"
        if box.limits.scratch_mb
        else "unlimited"
    )
    cpu = (
        f"RLIMIT_CPU {box.limits.cpu_seconds} s per process"
        if box.limits.cpu_seconds
        else "RLIMIT_CPU per process, set above the run's budget once it is known: a process that escapes the "
        "watchdog is killed"
    )
    caps = {
        "processes": processes,
        "memory": memory,
        "file_size": file_size,
        "identity": identity,
        "scratch": scratch,
        "disk": disk,
        "cpu": cpu,
        "missing": tuple(missing),
        "device": device,
    }
    if box.bwrap:
        seen = (
            "mount namespace: sees only the interpreter, the challenge package, its inputs (read-only), outputs "
            "and scratch (also at /kaggle/working and /kaggle/tmp, emptied between runs); everything else read-only"
        )
        return Protections("bubblewrap", seen, "none (empty network namespace)", **caps)
    network = "none (empty network namespace via unshare)" if box.net_prefix else "open (unshare unavailable)"
    return Protections(
        f"none ({problem})", "participant code can read your files (every file you can read)", network, **caps
    )


def _process_cap(box: Setup) -> tuple[str, list[str]]:
    n = box.limits.max_processes
    group = "own pid namespace, no capabilities, killed as a group" if box.bwrap else "own session, killed as a group"
    if not n:
        return f"unlimited; {group}", []
    if box.cgroup_pids:
        return f"at most {n} processes and threads (cgroup v2 pids.max); {group}", []
    if box.bwrap and box.own_uid:
        return f"at most {n} processes and threads (RLIMIT_NPROC of a host uid only this child has); {group}", []
    if box.bwrap and not box.root:
        return (
            f"at most {n} processes and threads (RLIMIT_NPROC, counted in the child's own user namespace); {group}",
            [],
        )
    why = (
        "the child runs as root, which RLIMIT_NPROC does not bind"
        if box.bwrap
        else "no user namespace of its own to count them in"
    )
    return (
        f"not capped by the kernel ({why}, and no cgroup v2 pids controller is delegated): the watchdog stops the "
        f"child at {n}; {group}",
        [f"processes ({why})"],
    )


def _identity(box: Setup) -> tuple[str, list[str]]:
    nested = "--disable-userns" in box.options or box.own_uid
    no_more = (
        "may create no further user namespaces" if nested else "may create further user namespaces (bubblewrap < 0.8)"
    )
    if box.own_uid:
        return (
            f"uid {INNER_ID} in its own user namespace (a host uid from {UID_BASE} up that no other running child "
            "has), no capabilities, "
            f"{no_more}; sees only its own processes in /proc, cannot signal the scorer",
            [],
        )
    if box.bwrap and not box.root:
        return (
            f"uid {INNER_ID} in its own user namespace (your uid {os.getuid()} outside), no capabilities, {no_more}; "
            "sees only its own processes in /proc, cannot signal the scorer",
            [] if nested else ["nested user namespaces (bubblewrap < 0.8)"],
        )
    if box.bwrap:
        why = probe.userns_problem()
        return f"root without capabilities, in no user namespace of its own ({why}); sees only its own processes", [
            f"identity ({why})"
        ]
    return f"your own uid {os.getuid()}: it can see and signal your processes", ["identity (no sandbox)"]


def _scratch_cap(box: Setup) -> tuple[str, list[str]]:
    mb = box.limits.scratch_mb
    if not mb:
        return "unlimited", []
    if box.bwrap and "--size" in box.options:
        return (
            f"/tmp, /dev/shm and the working folder (cwd, HOME, /kaggle/working, /kaggle/tmp) are tmpfs of {mb} MB "
            "each, freed with the sandbox",
            [],
        )
    if box.bwrap:
        return f"tmpfs without a size (bubblewrap < 0.7 has no --size): the watchdog stops the child past {mb} MB", [
            "scratch (bubblewrap < 0.7 has no --size)"
        ]
    return f"the working folder is on your disk: the watchdog stops the child past {mb} MB; /tmp is yours", []
