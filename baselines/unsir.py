"""UNSIR: learn error-maximising noise for the forget set, impair the model with it, then repair on the retain set.

Source: Tarun, Chundawat, Mandal & Kankanhalli, "Fast Yet Effective Machine Unlearning", IEEE
Transactions on Neural Networks and Learning Systems 2023 (arXiv:2111.08947). Noise inputs are
optimised to maximise the model's loss for the forget labels (with an l2 penalty that keeps them
bounded); one high-learning-rate "impair" pass on that noise, labelled with the forget labels, mixed
with retain images, wrecks what the model knows of the forget data, and a "repair" pass on the retain
set alone restores the rest.
Adapted to sample-wise forgetting: the paper forgets whole classes and learns one noise per class;
here the forget set is a few people spread over every age group, so one free noise image is learned
per forget image, with that image's label (the labels' mix stands in for the forget classes);
`anchor` true instead learns a perturbation added to each forget image. Nothing in either targets
the identities themselves, so this is a weak method for sample-wise forgetting.
Hyperparameters found by `challenge tune baselines/unsir.py tune.trials=10` on 2026-12-04: 10 TPE trials
(0 failed) maximising the final score at N=16 on the tuning split (data.split.seed=1); trial 0 was the
file's earlier values (impair_lr 0.04, impair_steps 5, repair_epochs 0.8), which scored 0.031 there.
Best: trial 3, 0.036 (impair_lr 0.0723, impair_steps 5, repair_epochs 0.975), shipped rounded to three
significant digits.

Before `challenge tune`, by hand: tuned on the tuning split (data.split.seed=1), 2026-12-03: at N=16,
anchored noise with impair lr 0.02 x 4 steps and 0.6 repair epochs at 0.01 scored final 0.028 (F 0.048,
retain ratio 0.76); free noise with impair lr 0.04 x 5 steps and 0.8 repair epochs at 0.02 scored 0.031
(kept, 56% of the budget). Local checks: free noise at lr 0.02 barely impairs, at 0.06 x 6 halves retain
accuracy.
"""

import torch
import torch.nn.functional as F

PARAMS = {
    "anchor": False,  # noise added to the forget images (true) or free noise images as in the paper (false)
    "noise_steps": 3,  # Adam steps on the noise (each covers every forget image)
    "noise_lr": 0.1,
    "noise_reg": 0.1,  # weight of the noise's mean square in its loss
    "impair_steps": 5,  # retain batches mixed with noise, at impair_lr
    "impair_lr": 0.0723,
    "repair_epochs": 0.975,  # passes over the retain set, at repair_lr
    "repair_lr": 0.02,
    "momentum": 0.9,
    "weight_decay": 5e-4,
}
SEARCH = {
    "impair_steps": "range(2, 8)",
    "impair_lr": "tag(log, interval(0.005, 0.1))",
    "repair_epochs": "interval(0.3, 1.0)",
}


def unlearning(net, retain_loader, forget_loader, val_loader):
    """Noise, impair, repair."""
    device = next(net.parameters()).device
    forget = [(b["image"].to(device), b["age_group"].to(device)) for b in forget_loader]
    noise = [error_maximising_noise(net, images, labels) for images, labels in forget]
    noise_images, noise_labels = torch.cat([n for n, _ in noise]), torch.cat([y for _, y in noise])
    sgd = dict(momentum=PARAMS["momentum"], weight_decay=PARAMS["weight_decay"])
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=PARAMS["impair_lr"], **sgd)
    for batch in batches(retain_loader, PARAMS["impair_steps"]):
        pick = torch.randperm(len(noise_images), device=device)[: len(batch["image"])]
        images = torch.cat([batch["image"].to(device), noise_images[pick]])
        labels = torch.cat([batch["age_group"].to(device), noise_labels[pick]])
        step(optimizer, F.cross_entropy(net(images), labels))
    steps = max(1, round(PARAMS["repair_epochs"] * len(retain_loader)))
    optimizer = torch.optim.SGD(net.parameters(), lr=PARAMS["repair_lr"], **sgd)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    for batch in batches(retain_loader, steps):
        step(optimizer, F.cross_entropy(net(batch["image"].to(device)), batch["age_group"].to(device)))
        scheduler.step()
    net.eval()
    return net


def error_maximising_noise(net, images, labels):
    """Inputs that the current model gets as wrong as it can for `labels`: maximise CE - reg * mean(noise^2).

    Eval mode: the noise is fitted to the model as it predicts, and BatchNorm statistics stay put.
    """
    net.eval()
    scale = 0.1 if PARAMS["anchor"] else 1.0  # a small perturbation of a face, or a noise image
    noise = (scale * torch.randn_like(images)).requires_grad_(True)
    optimizer = torch.optim.Adam([noise], lr=PARAMS["noise_lr"])
    for _ in range(PARAMS["noise_steps"]):
        inputs = images + noise if PARAMS["anchor"] else noise
        loss = -F.cross_entropy(net(inputs), labels) + PARAMS["noise_reg"] * noise.pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.zero_grad(set_to_none=True)
    with torch.no_grad():
        return (images + noise if PARAMS["anchor"] else noise).detach(), labels


def step(optimizer, loss):
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def batches(loader, steps):
    """`steps` batches, reshuffled on every pass: the budget is counted in steps, not whole epochs."""
    while True:
        for batch in loader:
            if steps == 0:
                return
            steps -= 1
            yield batch
