"""Verdict timeout: every run burns 1.0 CPU second, twice the 0.5 s budget the tests give it."""

import time


def unlearning(net, retain_loader, forget_loader, val_loader):
    end = time.process_time() + 1.0
    while time.process_time() < end:
        pass
