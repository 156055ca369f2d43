"""A file with hyperparameters: `scale` shrinks every weight matrix, so another value is another model."""

import torch

PARAMS = {"scale": 1.0, "rounds": 1, "note": "plain"}
SEARCH = {"scale": "interval(0.5, 1.0)"}


def unlearning(net, retain_loader, forget_loader, val_loader):
    with torch.no_grad():
        for _ in range(PARAMS["rounds"]):
            for p in net.parameters():
                if p.dim() > 1:
                    p.mul_(PARAMS["scale"])
