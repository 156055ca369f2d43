"""NegGrad+: gradient ascent on the forget set and descent on the retain set, in one loss.

Source: Kurmanji, Triantafillou, Hayes & Triantafillou, "Towards Unbounded Machine Unlearning",
NeurIPS 2023 (arXiv:2302.09880), which introduced NegGrad+ as a strong baseline. Plain gradient
ascent (NegGrad) destroys the model; the retain term keeps it useful while the forget term pushes
the forget images' loss up. The forget set is far smaller than the retain set, so its batches
cycle (reshuffled on every pass) to give every retain step one to oppose.
Hyperparameters found by `challenge tune baselines/neggrad_plus.py tune.trials=20` on 2026-12-03: 20 TPE
trials maximising the final score at N=16 on the tuning split (data.split.seed=1), best 0.067 there
(epochs 1.2992, lr 0.028939, beta 0.91074; rounded here to 1.3, 0.0289, 0.911). On the default split the
exact values score 0.050 and the rounded ones 0.056; the earlier values (1.0, 0.05, 0.85), picked on
the default split itself, scored 0.065 there: the gap is the optimism of tuning on the reported split.
"""

import torch
from torch import nn

PARAMS = {  # read in unlearning(); `challenge score FILE +params.lr=...` or params_file=best.json change them
    "epochs": 1.3,  # passes over the retain set; each step also sees one forget batch
    "lr": 0.0289,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "beta": 0.911,  # weight of the retain loss; 1 - beta goes to the (negated) forget loss
}
SEARCH = {  # what `challenge tune` searches (Hydra's optuna-sweeper grammar)
    "epochs": "interval(0.5, 1.5)",
    "lr": "tag(log, interval(0.01, 0.1))",
    "beta": "interval(0.7, 0.97)",
}


def unlearning(net, retain_loader, forget_loader, val_loader):
    """Minimise beta * CE(retain) - (1 - beta) * CE(forget) with SGD."""
    device = next(net.parameters()).device
    criterion = nn.CrossEntropyLoss()
    steps = max(1, round(PARAMS["epochs"] * len(retain_loader)))
    optimizer = torch.optim.SGD(
        net.parameters(), lr=PARAMS["lr"], momentum=PARAMS["momentum"], weight_decay=PARAMS["weight_decay"]
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    net.train()
    for retain, forget in zip(batches(retain_loader, steps), batches(forget_loader, steps)):
        optimizer.zero_grad()
        retain_loss = criterion(net(retain["image"].to(device)), retain["age_group"].to(device))
        forget_loss = criterion(net(forget["image"].to(device)), forget["age_group"].to(device))
        (PARAMS["beta"] * retain_loss - (1 - PARAMS["beta"]) * forget_loss).backward()
        optimizer.step()
        scheduler.step()
    net.eval()
    return net


def batches(loader, steps):
    """`steps` batches, reshuffled on every pass: the budget is counted in steps, not whole epochs."""
    while True:
        for batch in loader:
            if steps == 0:
                return
            steps -= 1
            yield batch
