"""Verdict no_function: the function has another name."""


def unlearn(net, retain_loader, forget_loader, val_loader):
    pass
