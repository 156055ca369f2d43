"""Inject noise into the weights, then fine-tune on the retain set with a class-weighted loss.

Source: the family of the NeurIPS 2023 challenge's #4 (private leaderboard), Seif Eddine Achour
(https://www.kaggle.com/competitions/neurips-2023-machine-unlearning/discussion/459334; see also
Triantafillou et al., arXiv:2406.09073): perturb the trained weights with Gaussian noise to shake
loose what was memorised, then repair utility on retain data. It is not his entry (σ 0.6 on the
convolutions, four SGD epochs, a second light noise, class 0 weighted 20x): a simplification that
fits the kit's budget (one Adam pass), tuned for the kit's default preset. The noise is
scaled to each tensor's own spread, so every layer is disturbed alike; the loss is weighted by
inverse age-group frequency, as the original (and every retrained model) was trained, so that the
repaired model is calibrated like a retrained one rather than biased towards common age groups.
Hyperparameters found by `challenge tune baselines/noise_finetune.py tune.trials=10` on 2026-12-04: 10
TPE trials (0 failed) maximising the final score at N=16 on the tuning split (data.split.seed=1); trial
0 was the file's earlier values (epochs 0.9, lr 0.0015, noise 0.25), which scored 0.032 there. Best:
trial 2, 0.048 (epochs 0.924, lr 0.00289, noise 0.35), shipped rounded to three significant digits.
"""

import torch
from torch import nn

PARAMS = {  # read in unlearning(); `challenge score FILE +params.lr=...` or params_file=best.json change them
    "noise": 0.35,  # standard deviation of the added noise, relative to each weight tensor's std
    "epochs": 0.924,  # passes over the retain set; a fraction stops early
    "lr": 0.00289,
    "weight_decay": 5e-4,
}
SEARCH = {  # what `challenge tune` searches (Hydra's optuna-sweeper grammar)
    "noise": "interval(0.05, 0.6)",
    "epochs": "interval(0.5, 1.5)",
    "lr": "tag(log, interval(0.0003, 0.01))",
}


def unlearning(net, retain_loader, forget_loader, val_loader):
    """Perturb every weight matrix and filter, then fine-tune on the retain set."""
    device = next(net.parameters()).device
    n_classes = output_size(net, retain_loader, device)
    criterion = nn.CrossEntropyLoss(weight=class_weights(retain_loader, n_classes).to(device))
    add_noise(net, PARAMS["noise"])
    optimizer = torch.optim.Adam(net.parameters(), lr=PARAMS["lr"], weight_decay=PARAMS["weight_decay"])
    steps = max(1, round(PARAMS["epochs"] * len(retain_loader)))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    net.train()
    for batch in batches(retain_loader, steps):
        optimizer.zero_grad()
        criterion(net(batch["image"].to(device)), batch["age_group"].to(device)).backward()
        optimizer.step()
        scheduler.step()
    net.eval()
    return net


@torch.no_grad()
def add_noise(net, scale):
    """Weights of convolutions and linear layers only: biases and norm parameters set no memories."""
    for p in net.parameters():
        if p.dim() > 1:
            p.add_(torch.randn_like(p) * scale * p.std())


def class_weights(loader, n_classes):
    """1/count per age group, normalised to mean 1 (an empty group gets 0)."""
    counts = torch.zeros(n_classes, dtype=torch.float64)
    for batch in loader:
        counts += torch.bincount(batch["age_group"], minlength=n_classes).to(torch.float64)[:n_classes]
    weights = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
    return (weights / weights.sum() * n_classes).float()


@torch.no_grad()
def output_size(net, loader, device):
    """The number of age groups, read off the head (eval mode: norm statistics stay untouched)."""
    net.eval()
    return net(next(iter(loader))["image"][:1].to(device)).shape[1]


def batches(loader, steps):
    """`steps` batches, reshuffled on every pass: the budget is counted in steps, not whole epochs."""
    while True:
        for batch in loader:
            if steps == 0:
                return
            steps -= 1
            yield batch
