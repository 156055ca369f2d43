"""Verdict non_finite: the weights become NaN, so every output is NaN."""

import torch


def unlearning(net, retain_loader, forget_loader, val_loader):
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(float("nan"))
