"""Claims: an exclusive right to build one item of a pool (a seed, the original), held as an flock."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from challenge.files import try_lock

if TYPE_CHECKING:
    from challenge.pool.folder import Pool


class Claim:
    """An exclusive right to build one item (a seed or the original model): a lease on a file.

    The right is an flock on the claim file, not the file's existence, because only a lock is
    released by the kernel when its owner dies (kill -9, OOM, a lost SLURM node on NFSv4, whose
    server drops the node's locks when its lease runs out). So no process ever judges a claim stale
    and deletes it: a dead owner's file is taken over by whichever process next gets its lock, and
    a file is unlinked only by the process holding its lock.

    On NFS, Linux emulates flock with POSIX locks, which belong to the process and which closing any
    fd on the file drops: hold one Claim per item per process, and do not open the claim file
    elsewhere while holding it (challenge.files.try_lock, which takes the lock).
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """False while a live process holds the claim; never blocks."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this Claim")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = try_lock(self.path)
            if fd is None:
                return False
            # Between our open and our lock its previous owner may have released it, unlinking the
            # file: our lock is then on a name-less inode that the next process would not see.
            if self._names(fd):
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(
                fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}).encode(), 0
            )
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Unlink while still locked: once unlocked, the file at the path may already be a new owner's."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._names(fd):
                os.unlink(self.path)
        finally:
            os.close(fd)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _names(self, fd: int) -> bool:
        """Whether our path still names the file open as `fd`."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def claims(pool: "Pool", n: int) -> Iterator[list[int]]:
    """Packs of seeds (one seed each at pool.pack=1) this process should train now: one of the first n seeds
    missing or damaged, and claimed by nobody alive. A pack is claimed as a unit, by its first seed's name."""
    from challenge.pool.folder import read_entry

    end = int(pool.config["first_seed"]) + n
    for pack in pool.packs(n):
        needed = [seed for seed in pack if seed < end]
        if all(read_entry(pool.entry_path(seed)) is not None for seed in needed):
            continue
        with Claim(pool.claim_path(f"seed-{pack[0]:06d}")) as held:
            # another process may have just finished it
            if held and any(read_entry(pool.entry_path(seed)) is None for seed in needed):
                yield pack
