"""Verdict syntax_error: the colon after the signature is missing (line 4)."""


def unlearning(net, retain_loader, forget_loader, val_loader)
    pass
