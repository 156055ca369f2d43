"""Verdict timeout: runs far over any budget the tests give it."""

import time


def unlearning(net, retain_loader, forget_loader, val_loader):
    time.sleep(600)
