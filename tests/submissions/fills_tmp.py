"""Verdict disk: fills /tmp, which is RAM (a tmpfs); stops by itself at 96 MB, above the scorer.scratch_mb=64 the tests
set.
"""


def unlearning(net, retain_loader, forget_loader, val_loader):
    with open("/tmp/filler", "wb") as f:
        for _ in range(96):
            f.write(b"x" * (1 << 20))
            f.flush()
