"""Prune weights by magnitude and re-draw them, then fine-tune with an entropy-matching regulariser (Oleszko).

Source: Sebastian Oleszko, 5th on the private (6th on the public) leaderboard of the NeurIPS 2023 Machine
Unlearning Challenge (write-up https://www.kaggle.com/competitions/neurips-2023-machine-unlearning/discussion/459148;
summarised in Triantafillou et al., arXiv:2406.09073, https://arxiv.org/html/2406.09073v1).
The smallest-|w| weights of every layer (99% in the write-up) are replaced by random ones; fine-tuning on the
retain set uses lightly class-weighted CE plus an MSE between the entropies of the original's and the net's outputs.
Hyperparameters found by `challenge tune baselines/prune_reinit.py tune.trials=20` on 2026-12-04: 20 TPE
trials (0 failed) maximising the final score at N=16 on the tuning split (data.split.seed=1); trial 0
was the file's earlier values (entropy_weight 1.0, epochs 1.4, lr 0.003, prune 0.35), which scored 0.062
there. They stayed the best, so they are kept.

Before `challenge tune`, by hand: tuned for the kit's default preset on the tuning split
(data.split.seed=1, N=16), on 2026-12-03: re-drawing 90%, 75% or 60% of each layer left too little to
rebuild in the budget (retain ratio 0.2-0.38, final 0.008-0.026); 35% at lr 3e-3 over 1.4 epochs scored
0.062 (kept, half the budget), 25% 0.055.
"""

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

PARAMS = {
    "prune": 0.35,  # fraction of each conv/linear layer's weights (smallest |w| first) re-drawn; the write-up: 0.99
    "epochs": 1.4,  # passes over the retain set; a fraction stops early
    "lr": 0.003,  # Adam, cosine-annealed
    "entropy_weight": 1.0,  # weight of the entropy-matching MSE
    "class_weight_power": 0.1,  # CE weights (inverse class frequency) ** this, as in the write-up
    "weight_decay": 5e-4,
}
SEARCH = {
    "prune": "interval(0.15, 0.6)",
    "lr": "tag(log, interval(0.0005, 0.006))",
    "epochs": "interval(0.8, 1.6)",
    "entropy_weight": "tag(log, interval(0.1, 10.0))",
}


def unlearning(net, retain_loader, forget_loader, val_loader):
    """Prune-and-redraw, then minimise CE_w(retain) + weight * (H(net) - H(original))^2 on retain images."""
    device = next(net.parameters()).device
    teacher = copy.deepcopy(net).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    prune_and_redraw(net, PARAMS["prune"])
    n_classes = [m for m in net.modules() if isinstance(m, nn.Linear)][-1].out_features
    weights = class_weights(retain_loader, PARAMS["class_weight_power"], n_classes).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=PARAMS["lr"], weight_decay=PARAMS["weight_decay"])
    steps = max(1, round(PARAMS["epochs"] * len(retain_loader)))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    net.train()
    for batch in batches(retain_loader, steps):
        images, labels = batch["image"].to(device), batch["age_group"].to(device)
        logits = net(images)
        with torch.no_grad():
            target_entropy = entropy(teacher(images))
        loss = F.cross_entropy(logits, labels, weight=weights)
        loss = loss + PARAMS["entropy_weight"] * F.mse_loss(entropy(logits), target_entropy)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    net.eval()
    return net


@torch.no_grad()
def prune_and_redraw(net, fraction):
    """L1 unstructured, layer by layer: the `fraction` smallest-|w| entries of each conv and linear
    weight take values from a fresh initialisation of that layer (the largest survive as a skeleton)."""
    for m in net.modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        k = int(fraction * m.weight.numel())
        if k == 0:
            continue
        mask = m.weight.abs() <= m.weight.abs().flatten().kthvalue(k).values
        m.weight[mask] = fresh_weight(m)[mask]


def fresh_weight(module):
    """He-normal for convolutions (as timm's ResNets start), PyTorch's default for linear layers."""
    w = torch.empty_like(module.weight)
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    else:
        nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    return w


def entropy(logits):
    """Per-image entropy of the predicted distribution; the original's is the best guess of how
    uncertain a retrained model is, so the student is held to it rather than to its labels alone."""
    logp = F.log_softmax(logits, 1)
    return -(logp.exp() * logp).sum(1)


def class_weights(loader, power, n_classes):
    """(1 / class count) ** power, normalised to mean 1; an absent class gets the largest weight."""
    counts = torch.zeros(n_classes)
    for batch in loader:
        counts += torch.bincount(batch["age_group"], minlength=n_classes)[:n_classes].float()
    w = counts.clamp(min=1) ** -power
    return w / w.mean()


def batches(loader, steps):
    """`steps` batches, reshuffled on every pass: the budget is counted in steps, not whole epochs."""
    while True:
        for batch in loader:
            if steps <= 0:
                return
            steps -= 1
            yield batch
