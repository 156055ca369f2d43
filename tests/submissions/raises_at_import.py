"""Verdict raised: fails while the file is loaded, before any run."""

raise ImportError("no module named secret_sauce")


def unlearning(net, retain_loader, forget_loader, val_loader):
    pass
