"""Boundary Shrink: relabel each forget image with its nearest wrong class, found by an FGSM step, and fine-tune.

Source: Chen, Gao, Liu, Peng & Zhou, "Boundary Unlearning: Rapid Forgetting of Deep Networks via
Shifting the Decision Space", CVPR 2023. An adversarial step (FGSM, one signed-gradient step of size
EPS) on the original model moves each forget image just across its nearest decision boundary; the
class it lands in is the "nearest but incorrect" label, and fine-tuning the forget images towards
those labels shrinks the boundary around them, so that the model forgets them with little damage.
Adapted to the kit: the forget set is a set of people, not a class, so a short repair pass on the
retain set follows (as for random_label; `retain_epochs` 0 is the paper's method alone); the true
class is masked out of the adversarial prediction so the label is always a wrong one; EPS is in
units of the images' standard deviation (they are normalised), 0.4 being about the paper's 0.1 of
the pixel range.
Hyperparameters found by `challenge tune baselines/boundary_shrink.py tune.trials=10` on 2026-12-04: 10
TPE trials (0 failed) maximising the final score at N=16 on the tuning split (data.split.seed=1); trial
0 was the file's earlier values (forget_lr 0.005, forget_steps 6, retain_epochs 0.7), which scored 0.041
there. Best: trial 1, 0.065 (forget_lr 0.0114, forget_steps 6, retain_epochs 0.723), shipped rounded to
three significant digits.

Before `challenge tune`, by hand: tuned on the tuning split (data.split.seed=1), 2026-12-03: the paper's
method alone (`retain_epochs` 0) or 8 forget steps at lr 0.01 halved retain accuracy in a local check;
at N=16, 6 forget steps at lr 0.005 with 0.7 retain epochs scored final 0.041 (kept), 4 steps with 1.0
epochs 0.027.
"""

import copy

import torch
import torch.nn.functional as F

PARAMS = {
    "eps": 0.4,  # FGSM step, in standard deviations of the (normalised) images
    "forget_steps": 6,  # forget batches trained towards their neighbour labels
    "forget_lr": 0.0114,
    "retain_epochs": 0.723,  # passes over the retain set in the repair phase (0: none)
    "retain_lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
}
SEARCH = {
    "forget_steps": "range(2, 10)",
    "forget_lr": "tag(log, interval(0.001, 0.03))",
    "retain_epochs": "interval(0.0, 1.2)",
}


def unlearning(net, retain_loader, forget_loader, val_loader):
    """Shrink the boundary around the forget images, then repair on the retain set."""
    device = next(net.parameters()).device
    original = copy.deepcopy(net).eval()
    neighbour = {}  # image_id -> nearest wrong class under the original model
    sgd = dict(momentum=PARAMS["momentum"], weight_decay=PARAMS["weight_decay"])
    optimizer = torch.optim.SGD(net.parameters(), lr=PARAMS["forget_lr"], **sgd)
    net.train()
    for batch in batches(forget_loader, PARAMS["forget_steps"]):
        images = batch["image"].to(device)
        labels = neighbour_labels(original, batch, neighbour, device)
        step(optimizer, F.cross_entropy(net(images), labels))
    steps = round(PARAMS["retain_epochs"] * len(retain_loader))
    if steps > 0:
        optimizer = torch.optim.SGD(net.parameters(), lr=PARAMS["retain_lr"], **sgd)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        for batch in batches(retain_loader, steps):
            step(optimizer, F.cross_entropy(net(batch["image"].to(device)), batch["age_group"].to(device)))
            scheduler.step()
    net.eval()
    return net


def neighbour_labels(original, batch, cache, device):
    """The nearest wrong class of each image of the batch, attacked once per image and kept by image_id.

    The attack is on the frozen original, as in the paper, so a label does not drift with training.
    """
    ids = batch["image_id"].tolist()
    todo = [i for i, k in enumerate(ids) if k not in cache]
    if todo:
        found = fgsm_neighbours(original, batch["image"][todo].to(device), batch["age_group"][todo].to(device))
        cache.update({ids[i]: c for i, c in zip(todo, found.tolist())})
    return torch.tensor([cache[k] for k in ids], device=device)


def fgsm_neighbours(model, images, labels):
    """argmax over the wrong classes of the model's output at x + eps * std(x) * sign(grad_x CE(x, y))."""
    images = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(images), labels), images)
    with torch.no_grad():
        adversarial = images + PARAMS["eps"] * images.std() * grad.sign()
        logits = model(adversarial)
        logits[torch.arange(len(labels)), labels] = float("-inf")  # never the true class
        return logits.argmax(1)


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
