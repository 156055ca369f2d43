"""Verdict left_processes: leaves a CPU hog in a session of its own (it gives up after 60 s by itself)."""

import subprocess
import sys


def unlearning(net, retain_loader, forget_loader, val_loader):
    spin = "import time; end = time.time() + 60; all(iter(lambda: time.time() < end, False))"
    subprocess.Popen([sys.executable, "-c", spin], start_new_session=True)
