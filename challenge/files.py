"""The file helpers every stage shares: whole-or-nothing writes, content hashes, and safe reads of what a child wrote.

Caches, pools and scored runs are read by other processes at any moment and must survive a
kill -9 or a lost node at any point, so every file the kit writes is written here: to a temporary
name beside the target, fsync'd, then renamed over it. Every key the kit derives from content
(pool fingerprints, cache keys, split manifests) is one hash of canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any, Callable


def write_atomic(path: Path, data: bytes | str) -> None:
    """A reader sees the whole file or none, even after kill -9; the temp name is unique per host and process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
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
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp{path.suffix}")
    save(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def content_hash(obj: Any, length: int = 16) -> str:
    """sha256 of canonical JSON (sorted keys; anything else as str): the same content, the same key."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def read_regular(path: Path, max_bytes: int) -> bytes | None:
    """The bytes of a regular file of at most `max_bytes`; None for a link, a FIFO, a device or a giant,
    which a sandboxed child may leave where its outputs should be (a FIFO would block the read for ever)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        try:
            return f.read(max_bytes + 1)
        except OSError:
            return None
