"""Verdict crashed: takes the interpreter down with a segmentation fault mid-run."""

import ctypes


def unlearning(net, retain_loader, forget_loader, val_loader):
    ctypes.string_at(0)
