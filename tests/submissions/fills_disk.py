"""Verdict disk: fills the outputs folder, the one place on the host's disk it may write; stops by itself at 160 MB,
above what scorer.scratch_mb=64 lets it hold there."""

import sys
import time
from pathlib import Path


def unlearning(net, retain_loader, forget_loader, val_loader):
    outputs = Path(sys.argv[2])  # the child's own argument: where the kit writes the runs' weights
    for i in range(160):
        (outputs / f"filler-{i}.bin").write_bytes(b"x" * (1 << 20))
        time.sleep(0.01)
    time.sleep(30)
