"""Scored: every run uses 0.4 CPU seconds, whatever the load (it must not be stopped by the wall clock)."""

import time


def unlearning(net, retain_loader, forget_loader, val_loader):
    end = time.process_time() + 0.4
    while time.process_time() < end:
        pass
