"""Verdict bad_signature: two parameters where the contract passes four."""


def unlearning(net, retain_loader):
    pass
