"""Seeds every generator at import, as a 2023 reproduction did, then adds random noise to the weights: the
kit seeds each run after the import, so the N runs still differ."""

import torch

torch.manual_seed(0)


def unlearning(net, retain_loader, forget_loader, val_loader):
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
