"""SCAR: pull each forget image's embedding to its nearest wrong class (Mahalanobis), distilling the original elsewhere.

Source: Bonato, Cotogni & Sabetta, "Is Retain Set All You Need in Machine Unlearning? Restoring
Performance of Unlearned Models with Out-Of-Distribution Images", ECCV 2024 (arXiv:2404.12922).
Class distributions (mean and shrunk covariance of Tukey-transformed, l2-normalised embeddings, the
classifier's input) are estimated with the original model; each forget embedding is then pulled,
by a Mahalanobis-distance loss, towards the closest class distribution that is not its own, while
a distillation term keeps the model's outputs on other images close to the original's.
Adapted to the kit: the distillation images are retain images (the paper's retain-set variant; it
mainly distils out-of-distribution images, which the kit does not provide); the class statistics
come from the retain set; the distillation is KL(original || model) on softened outputs; the
embedding is read at the input of the last Linear layer, so any timm classifier works.
Hyperparameters found by `challenge tune baselines/scar.py tune.trials=10` on 2026-12-04: 10 TPE trials
(0 failed) maximising the final score at N=16 on the tuning split (data.split.seed=1); trial 0 was the
file's earlier values (distill_weight 1.0, lr 0.002, steps 8), which scored 0.050 there. Best: trial 9,
0.064 (distill_weight 0.35, lr 0.0034, steps 4), shipped rounded to three significant digits.

Before `challenge tune`, by hand: tuned on the tuning split (data.split.seed=1), 2026-12-03: the paper's
lr 5e-4 with distillation weight 5 barely moved the forget set in a local check (forget accuracy 0.97);
lr 0.002 and weight 1 scored final 0.050 at N=16 with 8 steps (41% of the budget) and 0.054 with 12
steps (62%, over the kit's 60% aim), so 8 steps are kept.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn

PARAMS = {
    "steps": 4,  # forget batches, each paired with a retain batch for distillation
    "lr": 0.0034,  # Adam
    "distill_weight": 0.35,  # weight of the retain distillation against the Mahalanobis term
    "temperature": 1.0,
    "stats_epochs": 1.0,  # passes over the retain set for the class statistics (forward only)
    "shrink": 3.0,  # covariance shrinkage, for the diagonal and the off-diagonal alike
}
SEARCH = {
    "steps": "range(3, 14)",
    "lr": "tag(log, interval(0.0005, 0.01))",
    "distill_weight": "tag(log, interval(0.2, 10.0))",
}


def unlearning(net, retain_loader, forget_loader, val_loader):
    """Mahalanobis pull of forget embeddings to the nearest wrong class plus distillation on retain images."""
    device = next(net.parameters()).device
    original = copy.deepcopy(net).eval()
    for p in original.parameters():
        p.requires_grad_(False)
    means, precisions, known = class_statistics(original, retain_loader, device)
    targets = {}  # image_id -> the nearest wrong class under the original model
    optimizer = torch.optim.Adam(net.parameters(), lr=PARAMS["lr"])
    steps = PARAMS["steps"]
    net.train()
    for forget, retain in zip(batches(forget_loader, steps), batches(retain_loader, steps)):
        target = nearest_wrong_classes(original, forget, (means, precisions, known), targets, device)
        embedding, _ = embed(net, forget["image"].to(device))
        pull = mahalanobis(normalised(embedding), means[target], precisions[target]).mean()
        images = retain["image"].to(device)
        with torch.no_grad():
            teacher = original(images)
        keep = distill_kl(net(images), teacher, PARAMS["temperature"])
        optimizer.zero_grad()
        (pull + PARAMS["distill_weight"] * keep).backward()
        optimizer.step()
    net.eval()
    return net


def embed(net, images):
    """(embedding, logits): the embedding is what the last Linear layer receives, caught by a hook."""
    head = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    caught = []
    handle = head.register_forward_pre_hook(lambda module, inputs: caught.append(inputs[0]))
    try:
        logits = net(images)
    finally:
        handle.remove()
    return caught[0].flatten(1), logits


def normalised(embedding):
    """Tukey's power transform (square root; embeddings after a ReLU are >= 0), then unit length."""
    return F.normalize(embedding.clamp_min(0).sqrt(), dim=1)


@torch.no_grad()
def class_statistics(model, loader, device):
    """Per class: the mean of normalised embeddings and the inverse of their shrunk correlation matrix.

    A class with fewer than two retain images is marked unknown (False), so it is never the nearest.
    """
    steps = max(1, round(PARAMS["stats_epochs"] * len(loader)))
    embeddings, labels = [], []
    for batch in batches(loader, steps):
        embeddings.append(normalised(embed(model, batch["image"].to(device))[0]))
        labels.append(batch["age_group"].to(device))
    embeddings, labels = torch.cat(embeddings), torch.cat(labels)
    n_classes, dim = model(embeddings.new_zeros(1, *batch["image"].shape[1:])).shape[1], embeddings.shape[1]
    means = torch.zeros(n_classes, dim, device=device)
    known = torch.zeros(n_classes, dtype=torch.bool, device=device)
    precisions = torch.eye(dim, device=device).repeat(n_classes, 1, 1)
    for c in range(n_classes):
        samples = embeddings[labels == c]
        if len(samples) >= 2:
            means[c], known[c] = samples.mean(0), True
            precisions[c] = torch.linalg.pinv(correlation(shrunk(torch.cov(samples.T))))
    return means, precisions, known


def shrunk(cov):
    """cov + s * mean variance * I + s * mean off-diagonal covariance * (1 - I): few images per class, many dims."""
    eye = torch.eye(len(cov), device=cov.device)
    off = cov * (1 - eye)
    v1, v2 = cov.diagonal().mean(), off.sum() / max(1, off.count_nonzero().item())
    s = PARAMS["shrink"]
    return cov + s * v1 * eye + s * v2 * (1 - eye)


def correlation(cov):
    """The covariance scaled to unit variances, so that no embedding dimension dominates the distance."""
    sigma = cov.diagonal().clamp_min(1e-12).sqrt()
    return cov / (sigma[:, None] * sigma[None, :])


def mahalanobis(z, mean, precision):
    """(z - mean)^T P (z - mean) per row; mean and P are given per row (the row's target class)."""
    diff = z - mean
    return torch.einsum("bd,bde,be->b", diff, precision, diff)


@torch.no_grad()
def nearest_wrong_classes(original, batch, stats, cache, device):
    """The class distribution nearest to each forget embedding, its own class excluded; found once per image."""
    means, precisions, known = stats
    ids = batch["image_id"].tolist()
    todo = [i for i, k in enumerate(ids) if k not in cache]
    if todo:
        z = normalised(embed(original, batch["image"][todo].to(device))[0])
        diff = z[:, None, :] - means[None]  # [b, classes, dim]
        dist = torch.einsum("bcd,cde,bce->bc", diff, precisions, diff)
        dist[:, ~known] = float("inf")
        dist[torch.arange(len(todo)), batch["age_group"][todo].to(device)] = float("inf")
        cache.update({ids[i]: c for i, c in zip(todo, dist.argmin(1).tolist())})
    return torch.tensor([cache[k] for k in ids], device=device)


def distill_kl(student_logits, teacher_logits, t):
    """KL(teacher || student) on temperature-softened outputs."""
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.softmax(teacher_logits / t, 1), reduction="batchmean")


def batches(loader, steps):
    """`steps` batches, reshuffled on every pass: the budget is counted in steps, not whole epochs."""
    while True:
        for batch in loader:
            if steps == 0:
                return
            steps -= 1
            yield batch
