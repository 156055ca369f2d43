"""Forget-remember cycles: re-initialise random layers, then distil the original back on retain data.

Source: Team Forget (Jaesin Ahn, Chaehyeon Lee, Jun-Hyun Bae, Junho Yim, Heechul Jung; Kyungpook National Univ.
and LG Energy Solution), 9th on the private (3rd on the public) leaderboard of the NeurIPS 2023 Machine
Unlearning Challenge (write-up https://www.kaggle.com/competitions/neurips-2023-machine-unlearning/discussion/458715;
project page https://junhyunb.github.io/en/projects/neurips2023-unlearning/, which says 8th). Retain set only:
each cycle re-draws a few randomly chosen conv layers (not the classifier, not projection shortcuts), then an
MSE loss to the original's logits on noise-augmented retain images restores utility.
Hyperparameters found by `challenge tune baselines/forget_cycles.py tune.trials=10` on 2026-12-04: 10
TPE trials (0 failed) maximising the final score at N=16 on the tuning split (data.split.seed=1); trial
0 was the file's earlier values (cycles 2, epochs 1.5, lr 0.004, n_layers 1), which scored 0.042 there.
They stayed the best, so they are kept.

Before `challenge tune`, by hand: tuned for the kit's default preset on the tuning split
(data.split.seed=1, N=16), on 2026-12-03: 3 cycles of 3 layers at lr 2e-3 over 1.2 epochs broke the net
(retain ratio 0.31, final 0.019); 1 layer per cycle at lr 4e-3 over 1.5 epochs scored 0.031 with 3
cycles and 0.042 with 2 (kept, ~half the budget). The test ResNet has 12 such convs (ResNet-18: 17), and
6 a cycle, the write-up's number, is far too many for its budget here.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn

PARAMS = {
    "cycles": 2,  # forget-remember cycles
    "n_layers": 1,  # conv layers drawn (with replacement) and re-drawn per cycle; the write-up used 6 of ResNet-18's
    "epochs": 1.5,  # passes over the retain set in all, split evenly across the cycles
    "lr": 0.004,  # Adam, cosine-annealed and restarted every cycle
    "image_noise": 0.01,  # std of the Gaussian noise added to the retain images (normalised units)
    "weight_decay": 0.0,
}
SEARCH = {
    "cycles": "range(2, 5)",
    "n_layers": "range(1, 7)",
    "lr": "tag(log, interval(0.0005, 0.006))",
    "epochs": "interval(0.8, 1.6)",
}


def unlearning(net, retain_loader, forget_loader, val_loader):
    """Alternate stochastic re-initialisation (forget) with MSE distillation from the original (remember)."""
    device = next(net.parameters()).device
    teacher = copy.deepcopy(net).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    cycles = max(1, int(PARAMS["cycles"]))
    total = max(cycles, round(PARAMS["epochs"] * len(retain_loader)))
    retain = batches(retain_loader, total)
    pool = selection_pool(net)
    for c in range(cycles):
        reinitialise_random_layers(pool, int(PARAMS["n_layers"]))
        steps = total // cycles + (1 if c < total % cycles else 0)
        remember(net, teacher, retain, steps, device)
    net.eval()
    return net


def selection_pool(net):
    """The convolutions outside projection shortcuts (timm and torchvision call them `downsample`):
    the write-up found re-drawing the classifier or the shortcuts hurt."""
    return [m for name, m in net.named_modules() if isinstance(m, nn.Conv2d) and "downsample" not in name]


def reinitialise_random_layers(pool, k):
    """A fresh He-normal draw for k layers picked at random with replacement (the seeded torch
    generator): random choice, not a fixed saliency ranking, spreads the runs as retraining does."""
    for i in torch.randint(len(pool), (k,)).tolist():
        layer = pool[i]
        layer.reset_parameters()
        nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")


def remember(net, teacher, retain, steps, device):
    """Knowledge preserving: match the original's logits (MSE) on noisy retain images, so the student
    relearns what the retain set supports and nothing about the (unseen) forget images."""
    optimizer = torch.optim.Adam(net.parameters(), lr=PARAMS["lr"], weight_decay=PARAMS["weight_decay"])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
    net.train()
    for _ in range(steps):
        images = next(retain)["image"].to(device)
        images = images + PARAMS["image_noise"] * torch.randn_like(images)
        with torch.no_grad():
            target = teacher(images)
        optimizer.zero_grad()
        F.mse_loss(net(images), target).backward()
        optimizer.step()
        scheduler.step()


def batches(loader, steps):
    """`steps` batches, reshuffled on every pass: the budget is counted in steps, not whole epochs."""
    while True:
        for batch in loader:
            if steps <= 0:
                return
            steps -= 1
            yield batch
