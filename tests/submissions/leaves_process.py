"""Verdict left_processes: starts a process and returns without waiting for it."""

import subprocess


def unlearning(net, retain_loader, forget_loader, val_loader):
    subprocess.Popen(["sleep", "600"])
