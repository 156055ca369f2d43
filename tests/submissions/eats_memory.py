"""Verdict memory: asks for 4 GiB, over the scorer.memory_mb the tests set (3 GiB)."""

import torch


def unlearning(net, retain_loader, forget_loader, val_loader):
    hoard = torch.ones(1 << 30, dtype=torch.float32)
    return net if hoard.sum() > 0 else None
