"""Verdict wrong_architecture: returns a model, but not one with the original's architecture."""

from torch import nn


def unlearning(net, retain_loader, forget_loader, val_loader):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
