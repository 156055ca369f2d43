"""Verdict raised: the participant's own exception, with their traceback in the log."""


def unlearning(net, retain_loader, forget_loader, val_loader):
    n_forget = len(forget_loader.dataset)
    return n_forget / 0
