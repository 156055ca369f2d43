"""Hostile: leaves a file in every folder it may write, and looks there for what other runs left, for
their weights in the outputs, and at a module global counting its calls. Raises if it finds anything:
scored only if no run can see another."""

import os
import sys
import tempfile
from pathlib import Path

CALLS = 0
SANDBOXED = os.environ.get("CHALLENGE_SANDBOX_PIDNS") == "1"  # /tmp and /dev/shm are the sandbox's own only there
FOLDERS = [
    os.getcwd(),
    os.path.expanduser("~"),
    tempfile.gettempdir(),
    sys.argv[2],
    "/kaggle/working",
    "/kaggle/tmp",
    *(["/tmp", "/dev/shm"] if SANDBOXED else []),
]  # sys.argv[2]: the child's outputs folder


def unlearning(net, retain_loader, forget_loader, val_loader):
    global CALLS
    CALLS += 1
    seen = {str(p) for folder in FOLDERS if os.path.isdir(folder) for p in Path(folder).rglob("left-by-a-run-*")}
    weights = sorted(p.name for p in Path(sys.argv[2]).glob("run-*.pt"))
    if CALLS != 1 or seen or weights:
        raise RuntimeError(
            f"runs share state: call {CALLS} in this process, found {sorted(seen)[:3]}, weights {weights[:3]}"
        )
    for folder in FOLDERS:
        if os.path.isdir(folder):
            Path(folder, f"left-by-a-run-{os.getpid()}").write_text("a run was here")
