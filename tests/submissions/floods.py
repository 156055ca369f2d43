"""Verdict flooded: writes to stdout without end."""


def unlearning(net, retain_loader, forget_loader, val_loader):
    while True:
        print("unlearning... " * 1000)
