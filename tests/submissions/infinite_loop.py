"""Verdict timeout: a run that never ends, burning CPU; stopped at the per-run cap (3 budgets)."""


def unlearning(net, retain_loader, forget_loader, val_loader):
    while True:
        pass
