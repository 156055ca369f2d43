"""Targeted re-initialisation: re-draw the weights whose retain and forget gradients agree, then retrain.

Source: Kookmin Univ. (Doun Lee, Jinwoo Bae, Jangho Kim), 3rd on the private leaderboard of the NeurIPS
2023 Machine Unlearning Challenge (write-up https://www.kaggle.com/competitions/neurips-2023-machine-unlearning/discussion/459200;
summarised in Triantafillou et al., arXiv:2406.09073, https://arxiv.org/html/2406.09073v1).
A retain-descent gradient plus a forget-ascent gradient (on equally many images) is a per-weight saliency; the
conv weights where it is smallest are re-drawn (He init), and retraining on the retain set moves the rest slowly.
Hyperparameters found by `challenge tune baselines/saliency_reinit.py tune.trials=10` on 2026-12-04: 10
TPE trials (0 failed) maximising the final score at N=16 on the tuning split (data.split.seed=1); trial
0 was the file's earlier values (epochs 1.2, fraction 0.8, kept_lr_scale 0.3, lr 0.05), which scored
0.042 there. Best: trial 2, 0.045 (epochs 1.04, fraction 0.691, kept_lr_scale 0.684, lr 0.0442), shipped
rounded to three significant digits.

Before `challenge tune`, by hand: tuned for the kit's default preset on the tuning split
(data.split.seed=1, N=16), on 2026-12-03: the write-up's 30% at SGD lr 0.02 barely moved the net (retain
ratio 1.00, F 0.005, final 0.005); 60% at lr 0.05 scored 0.013, 80% with the kept weights at 0.3x 0.042
(kept, about half the budget), 90% 0.027.
"""

import torch
import torch.nn.functional as F
from torch import nn

PARAMS = {
    "fraction": 0.691,  # of all conv weights (one global ranking) re-drawn; the write-up used 0.3 on ResNet-18
    "epochs": 1.04,  # passes over the retain set in retraining; a fraction stops early
    "lr": 0.0442,  # SGD with momentum, for the re-drawn weights
    "kept_lr_scale": 0.684,  # the weights that were not re-drawn move slower (the write-up: 0.1)
    "warmup": 0.1,  # fraction of the steps with a linear warm-up, then linear decay
    "weight_decay": 5e-4,
}
SEARCH = {
    "fraction": "interval(0.5, 0.95)",
    "lr": "tag(log, interval(0.01, 0.1))",
    "epochs": "interval(0.6, 1.6)",
    "kept_lr_scale": "tag(log, interval(0.03, 1.0))",
}


def unlearning(net, retain_loader, forget_loader, val_loader):
    """Saliency from both sets, re-draw the least salient conv weights, retrain them faster than the rest."""
    device = next(net.parameters()).device
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    saliency = gradient_saliency(net, convs, retain_loader, forget_loader, device)
    masks = redraw_least_salient(convs, saliency, PARAMS["fraction"])
    hooks = slow_kept_weights(net, masks, PARAMS["kept_lr_scale"])
    optimizer = torch.optim.SGD(net.parameters(), lr=PARAMS["lr"], momentum=0.9, weight_decay=PARAMS["weight_decay"])
    steps = max(1, round(PARAMS["epochs"] * len(retain_loader)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_decay(steps, PARAMS["warmup"]))
    net.train()
    for batch in batches(retain_loader, steps):
        optimizer.zero_grad()
        F.cross_entropy(net(batch["image"].to(device)), batch["age_group"].to(device)).backward()
        optimizer.step()
        scheduler.step()
    for h in hooks:
        h.remove()
    net.eval()
    return net


def gradient_saliency(net, convs, retain_loader, forget_loader, device):
    """|grad CE(retain) - grad CE(forget)| per conv weight: small where descending on the retain set
    would also keep fitting the forget set, so retraining alone could not make those weights forget.
    The retain sample is a random subset as large as the forget set (a fresh one each run)."""
    net.eval()  # measuring only: the norm layers' running statistics stay as they are
    net.zero_grad()
    n_forget = 0
    for batch in forget_loader:
        n_forget += len(batch["image"])
        (-F.cross_entropy(net(batch["image"].to(device)), batch["age_group"].to(device), reduction="sum")).backward()
    seen = 0
    for batch in retain_loader:
        images, labels = batch["image"][: n_forget - seen], batch["age_group"][: n_forget - seen]
        F.cross_entropy(net(images.to(device)), labels.to(device), reduction="sum").backward()
        seen += len(images)
        if seen >= n_forget:
            break
    saliency = [m.weight.grad.abs().clone() for m in convs]
    net.zero_grad()
    return saliency


@torch.no_grad()
def redraw_least_salient(convs, saliency, fraction):
    """One global threshold over all conv weights; those under it take a fresh He-normal draw
    (fan_out, as torchvision's ResNets start). Returns the re-drawn masks."""
    flat = torch.cat([s.flatten() for s in saliency])
    k = int(fraction * flat.numel())
    threshold = flat.kthvalue(k).values if k > 0 else flat.min() - 1
    masks = []
    for module, s in zip(convs, saliency):
        mask = s <= threshold
        fresh = torch.empty_like(module.weight)
        nn.init.kaiming_normal_(fresh, mode="fan_out", nonlinearity="relu")
        module.weight[mask] = fresh[mask]
        masks.append((module.weight, mask))
    return masks


def slow_kept_weights(net, masks, scale):
    """Gradient hooks: re-drawn conv weights learn at the full rate, every other parameter at `scale`
    of it (with SGD a scaled gradient is a scaled learning rate)."""
    redrawn = {id(w): mask for w, mask in masks}
    hooks = []
    for p in net.parameters():
        mask = redrawn.get(id(p))
        factor = torch.full_like(p, scale) if mask is None else torch.where(mask, 1.0, scale).to(p.dtype)
        hooks.append(p.register_hook(lambda g, f=factor: g * f))
    return hooks


def warmup_then_decay(steps, warmup):
    """Linear warm-up over the first `warmup` of the steps, then linear decay to zero."""
    n_warm = max(1, round(warmup * steps))

    def factor(i):
        return (i + 1) / n_warm if i < n_warm else max(0.0, (steps - i) / max(1, steps - n_warm))

    return factor


def batches(loader, steps):
    """`steps` batches, reshuffled on every pass: the budget is counted in steps, not whole epochs."""
    while True:
        for batch in loader:
            if steps <= 0:
                return
            steps -= 1
            yield batch
