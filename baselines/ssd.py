"""Selective Synaptic Dampening (SSD): shrink the weights that matter far more to the forget set.

Source: Foster, Schoepf & Brintrup, "Fast Machine Unlearning Without Retraining Through Selective
Synaptic Dampening", AAAI 2024 (arXiv:2308.07707; github.com/if-loops/selective-synaptic-dampening).
The diagonal of the Fisher information (mean squared gradient of the loss) is estimated once on the
forget set and once on all the training data the file is given (retain and forget); every parameter
whose forget importance exceeds ALPHA times its overall importance is multiplied by
min(LAMBDA * overall / forget, 1). No training step follows, so nothing is repaired afterwards.
Adapted to the kit: the importances are taken in eval mode (BatchNorm's running statistics are not
touched), and the retain pass may cover a fraction of the retain set (`retain_epochs`) to save time.
Hyperparameters found by `challenge tune baselines/ssd.py tune.trials=10` on 2026-12-04: 10 TPE trials
(0 failed) maximising the final score at N=16 on the tuning split (data.split.seed=1); trial 0 was the
file's earlier values (alpha 5.0, lam 0.2, retain_epochs 1.0), which scored 0.052 there. They stayed the
best, so they are kept.

Before `challenge tune`, by hand: tuned on the tuning split (data.split.seed=1, N=16), 2026-12-03. The
selection threshold is sharp here: ALPHA 10 (the paper's) and 6 dampen nothing (final 0), 4 dampens too
much (F 0.110 but retain ratio 0.44); ALPHA 5 with LAMBDA 1, 0.5, 0.2 gave final 0.046, 0.050, 0.052.
"""

import torch
import torch.nn.functional as F

PARAMS = {
    "alpha": 5.0,  # selection threshold: forget importance / overall importance
    "lam": 0.2,  # dampening constant (the paper's lambda; its default is 1)
    "retain_epochs": 1.0,  # passes over the retain set for the overall importance
}
SEARCH = {
    "alpha": "tag(log, interval(3.0, 10.0))",
    "lam": "tag(log, interval(0.05, 2.0))",
    "retain_epochs": "interval(0.25, 1.0)",
}


def unlearning(net, retain_loader, forget_loader, val_loader):
    """Estimate both importances, then dampen the forget-specific parameters in place."""
    device = next(net.parameters()).device
    forget_imp, forget_n = importance(net, batches(forget_loader, len(forget_loader)), device)
    retain_steps = max(1, round(PARAMS["retain_epochs"] * len(retain_loader)))
    retain_imp, retain_n = importance(net, batches(retain_loader, retain_steps), device)
    # the overall importance is over retain and forget batches together, as the paper's "full data"
    overall = {name: (retain_imp[name] + forget_imp[name]) / (retain_n + forget_n) for name in retain_imp}
    forget = {name: forget_imp[name] / forget_n for name in forget_imp}
    dampen(net, forget, overall, PARAMS["alpha"], PARAMS["lam"])
    net.eval()
    return net


def importance(net, loader, device):
    """Sum over batches of the squared gradient of the mean loss (the Fisher diagonal's estimate).

    Returns the sum and the batch count, so that sums over two loaders can be pooled.
    """
    net.eval()  # the model as it predicts; running statistics stay as they are
    params = dict(net.named_parameters())
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    count = 0
    for batch in loader:
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(batch["image"].to(device)), batch["age_group"].to(device)).backward()
        for name, p in params.items():
            if p.grad is not None:
                total[name] += p.grad.detach() ** 2
        count += 1
    net.zero_grad(set_to_none=True)
    return total, count


@torch.no_grad()
def dampen(net, forget, overall, alpha, lam):
    """theta *= min(lam * overall / forget, 1) wherever forget > alpha * overall; elsewhere unchanged."""
    for name, p in net.named_parameters():
        selected = forget[name] > alpha * overall[name]
        factor = (lam * overall[name] / forget[name].clamp_min(1e-30)).clamp(max=1.0)
        p.mul_(torch.where(selected, factor, torch.ones_like(factor)))


def batches(loader, steps):
    """`steps` batches, reshuffled on every pass: the budget is counted in steps, not whole epochs."""
    while True:
        for batch in loader:
            if steps == 0:
                return
            steps -= 1
            yield batch
