"""Hostile: looks for the reference pool (the retrained models' confidences) and the scorer's cache.

It tries what participant code could: the checkout beside the `challenge` package it is given, the
usual caches, /tmp, and the environment of every process it can see (CHALLENGE_CACHE_DIR). It
raises either way, so that its message says what it found: in the sandbox, nothing.
"""

import os
from pathlib import Path

import challenge


def unlearning(net, retain_loader, forget_loader, val_loader):
    places = [Path(challenge.__file__).resolve().parents[1] / ".cache", Path.home() / ".cache", Path("/tmp")]
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            for entry in environ.read_bytes().split(b"\0"):
                if entry.startswith(b"CHALLENGE_CACHE_DIR="):
                    places.append(Path(entry.split(b"=", 1)[1].decode()))
        except OSError:
            continue
    found = [str(p) for place in places if place.is_dir() for p in _walk(place) if p.name == "pool.json"]
    if found:
        raise RuntimeError(f"snooped: found {len(found)} pool(s), e.g. {found[0]}")
    raise RuntimeError("snooped: found nothing")


def _walk(root, depth=6):
    try:
        for entry in os.scandir(root):
            yield Path(entry.path)
            if depth and entry.is_dir(follow_symlinks=False):
                yield from _walk(entry.path, depth - 1)
    except OSError:
        return
