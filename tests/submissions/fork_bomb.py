"""Verdict processes: starts sleeping processes without end (at most 300, so that a missing cap cannot harm CI)."""

import os
import time


def unlearning(net, retain_loader, forget_loader, val_loader):
    for _ in range(300):
        try:
            if os.fork() == 0:
                os.execv("/bin/sleep", ["sleep", "30"])
        except OSError:
            pass  # refused by the cap: keep trying, as a bomb would
    time.sleep(30)
