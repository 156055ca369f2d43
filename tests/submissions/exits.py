"""Verdict crashed: leaves the interpreter mid-run, with no exception to catch."""

import os


def unlearning(net, retain_loader, forget_loader, val_loader):
    os._exit(0)
