"""The file helpers every stage shares: whole-or-nothing writes, content hashes, locks between processes, and
capped reads of what a child wrote.

Caches, pools and scored runs are read by other processes at any moment and must survive a
kill -9 or a lost node at any point, so every file the kit writes is written here: to a temporary
name beside the target, fsync'd, then renamed over it. Every key the kit derives from content
(pool fingerprints, cache keys, split manifests) is one hash of canonical JSON. Every lock between
processes is an flock taken here, and every file a sandboxed child wrote is read through `read_regular`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import stat
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator


def _temp(path: Path, suffix: str = "") -> Path:
    """A temporary name beside `path`, unique per host, process and thread: two threads of one scorer (say, two
    scorings at once) may write the same file, and each must rename its own whole copy over it."""
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.{threading.get_native_id()}.tmp{suffix}")


def write_atomic(path: Path, data: bytes | str) -> None:
    """A reader sees the whole file or none, even after kill -9; the temp name is unique per host and process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp(path)
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj: Any, indent: int | None = None) -> None:
    write_atomic(path, json.dumps(obj, indent=indent))


def write_with(path: Path, save: Callable[[Path], None]) -> None:
    """For writers that want a path (torch.save, np.savez): they write a temp file, fsync'd, renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp(path, path.suffix)  # np.save adds .npy to a name without it
    save(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def content_hash(obj: Any, length: int = 16) -> str:
    """sha256 of canonical JSON (sorted keys; anything else as str): the same content, the same key."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def try_lock(path: Path, mode: int = 0o666) -> int | None:
    """An fd of `path` (created with `mode` if missing) holding an exclusive flock, or None while another open file
    holds it; never blocks. The lock lasts until the fd is closed, or its process dies: the kernel releases it
    then (kill -9, OOM, and on NFSv4 a lost node once the server's lease runs out), which is why the kit's locks
    are flocks and never a file's existence. The fd is not inherited by programs the holder execs.

    On NFS, Linux emulates flock with POSIX locks, which belong to the process and which closing any fd on
    the file drops: hold one lock per file per process, and do not open a locked file elsewhere meanwhile.
    """
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def locked(path: Path, mode: int = 0o666) -> Iterator[int]:
    """Waits for the exclusive flock on `path` (see `try_lock`) and holds it for the block; yields its fd."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def read_regular(path: Path, max_bytes: int) -> bytes | None:
    """The bytes of a regular file of at most `max_bytes`; None for a link, a FIFO, a device or a giant,
    which a sandboxed child may leave where its outputs should be (a FIFO would block the read for ever).
    Never reads more than `max_bytes` + 1 bytes, whatever the file's size, or its growth while being read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        try:
            blob = f.read(max_bytes + 1)
        except OSError:
            return None
    return blob if len(blob) <= max_bytes else None
