"""Re-initialise the top of the network, then distil the original into it on the retain set.

Source: the reset-and-distil family of the NeurIPS 2023 challenge's #7 (private leaderboard; its
write-up, titled "6th", https://www.kaggle.com/competitions/neurips-2023-machine-unlearning/discussion/458740,
and the Euclid team's page, https://euclid.ee.duth.gr/machine-unlearning/; Triantafillou et al.,
arXiv:2406.09073): reset part of the weights, then rebuild utility from the retain data with the
original model as a teacher. That entry reset the first convolution and the classifier and trained
the whole net; ours is a simplification: the last layers are reset and only they are trained (the kept layers are
frozen), so a step costs little more than two forward passes and the budget buys a full epoch of
distillation. Re-drawn weights scatter the runs the way independent retrainings scatter, and the
teacher only ever speaks about retain images, so what comes back is what the retain set supports.
Hyperparameters found by `challenge tune baselines/reinit_distill.py tune.trials=10` on 2026-12-04: 10
TPE trials (0 failed) maximising the final score at N=16 on the tuning split (data.split.seed=1); trial
0 was the file's earlier values (epochs 1.0, lr 0.002, reinit_fraction 0.15), which scored 0.022 there.
Best: trial 7, 0.039 (epochs 1.37, lr 0.00938, reinit_fraction 0.4), shipped rounded to three
significant digits.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn

PARAMS = {  # read in unlearning(); `challenge score FILE +params.lr=...` or params_file=best.json change them
    "reinit_fraction": 0.4,  # of the weighted layers, counted from the output end
    "epochs": 1.37,  # passes over the retain set; a fraction stops early
    "lr": 0.00938,
    "weight_decay": 5e-4,
    "temperature": 1.0,
    "distill_weight": 1.0,  # the cross-entropy on the true labels has weight 1
}
SEARCH = {  # what `challenge tune` searches (Hydra's optuna-sweeper grammar)
    "reinit_fraction": "interval(0.05, 0.5)",
    "epochs": "interval(0.5, 1.5)",
    "lr": "tag(log, interval(0.0005, 0.01))",
}


def unlearning(net, retain_loader, forget_loader, val_loader):
    """Reset the last layers, then teach them the retain set from labels and from the original's outputs."""
    device = next(net.parameters()).device
    teacher = copy.deepcopy(net).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    fresh = reinitialise_top(net, PARAMS["reinit_fraction"])
    for p in net.parameters():
        p.requires_grad_(False)
    for p in fresh:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(fresh, lr=PARAMS["lr"], weight_decay=PARAMS["weight_decay"])
    steps = max(1, round(PARAMS["epochs"] * len(retain_loader)))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    net.train()
    for batch in batches(retain_loader, steps):
        images, labels = batch["image"].to(device), batch["age_group"].to(device)
        logits = net(images)
        with torch.no_grad():
            target = teacher(images)
        loss = F.cross_entropy(logits, labels) + PARAMS["distill_weight"] * distill_kl(logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    for p in net.parameters():
        p.requires_grad_(True)
    net.eval()
    return net


def reinitialise_top(net, fraction):
    """Fresh weights for the last `fraction` of the layers that have weights (norms included);
    returns their parameters. Layers are taken in definition order: for a ResNet, stem to head."""
    layers = [m for m in net.modules() if not list(m.children()) and hasattr(m, "reset_parameters")]
    start = int(round(len(layers) * (1 - fraction)))
    for module in layers[start:]:
        module.reset_parameters()
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return [p for module in layers[start:] for p in module.parameters()]


def distill_kl(student_logits, teacher_logits):
    """KL(teacher || student) on temperature-softened outputs, scaled by T^2 as in Hinton et al."""
    t = PARAMS["temperature"]
    return (
        F.kl_div(F.log_softmax(student_logits / t, 1), F.softmax(teacher_logits / t, 1), reduction="batchmean") * t * t
    )


def batches(loader, steps):
    """`steps` batches, reshuffled on every pass: the budget is counted in steps, not whole epochs."""
    while True:
        for batch in loader:
            if steps == 0:
                return
            steps -= 1
            yield batch
