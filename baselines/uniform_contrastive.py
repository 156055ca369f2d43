"""Forget outputs pulled to uniform, then rounds of forget-vs-retain contrast and retain fine-tuning (fanchuan).

Source: fanchuan, 2nd on the private and 1st on the public leaderboard of the NeurIPS 2023 Machine
Unlearning Challenge (write-up https://www.kaggle.com/competitions/neurips-2023-machine-unlearning/discussion/458721;
summarised in Triantafillou et al., arXiv:2406.09073, https://arxiv.org/html/2406.09073v1).
Stage 1 minimises KL(uniform || softmax) on the forget images; stage 2 alternates a forget round, where a
contrastive loss spreads each forget output evenly over a batch of retain outputs, with CE on the retain set.
Hyperparameters found by `challenge tune baselines/uniform_contrastive.py tune.trials=20` on 2026-12-04:
20 TPE trials (0 failed) maximising the final score at N=16 on the tuning split (data.split.seed=1);
trial 0 was the file's earlier values (lr 0.003, retain_epochs 0.5, rounds 2, uniform_epochs 1.0), which
scored 0.053 there. Best within the budget's headroom: trial 4, 0.054 (lr 0.00326, retain_epochs 0.35,
rounds 3, uniform_epochs 0.174), shipped rounded to three significant digits. The search's top, trial 12
(0.085: lr 0.00458, 3 rounds of 0.751 retain epochs), ran at 95% of its budget and timed out on the
default split, which is why tune now scores a trial past tune.budget_share=0.7 of its budget as 0; trial
4 is the best that the rule keeps (peak 55%).

Before `challenge tune`, by hand: tuned for the kit's default preset on the tuning split
(data.split.seed=1, N=16), on 2026-12-03: one round of the write-up's shape (lr 1e-3, a full retain
epoch) scored 0.019; two rounds of 0.6 retain epochs at lr 2e-3 0.038; two of 0.5 at lr 3e-3 0.053
(kept, about half the budget). Two early variants (a feature-space InfoNCE with flipped views, mixed
into retain steps) scored 0.032-0.035.
"""

import torch
import torch.nn.functional as F

PARAMS = {
    "lr": 0.00326,  # Adam, every stage
    "uniform_epochs": 0.174,  # passes over the forget set in stage 1
    "rounds": 3,  # stage-2 rounds: one pass over the forget set (contrast), then retain fine-tuning
    "retain_epochs": 0.35,  # passes over the retain set per round; a fraction stops early
    "temperature": 1.15,  # of the contrastive loss, as in the write-up
    "weight_decay": 5e-4,
}
SEARCH = {
    "lr": "tag(log, interval(0.001, 0.008))",
    "rounds": "range(1, 3)",
    "retain_epochs": "interval(0.3, 1.0)",
    "uniform_epochs": "interval(0.0, 2.0)",
}


def unlearning(net, retain_loader, forget_loader, val_loader):
    """Stage 1: forget outputs -> uniform. Stage 2: `rounds` x (contrastive forget pass, retain CE)."""
    device = next(net.parameters()).device
    net.train()
    forget_opt = torch.optim.Adam(net.parameters(), lr=PARAMS["lr"], weight_decay=PARAMS["weight_decay"])
    for batch in batches(forget_loader, round(PARAMS["uniform_epochs"] * len(forget_loader))):
        step(forget_opt, kl_to_uniform(net(batch["image"].to(device))))
    retain_opt = torch.optim.Adam(net.parameters(), lr=PARAMS["lr"], weight_decay=PARAMS["weight_decay"])
    retain_steps = max(1, round(PARAMS["retain_epochs"] * len(retain_loader)))
    for _ in range(max(1, int(PARAMS["rounds"]))):
        for forget, retain in zip(forget_loader, batches(retain_loader, len(forget_loader))):
            outputs = net(forget["image"].to(device))
            with torch.no_grad():
                targets = net(retain["image"].to(device))
            step(forget_opt, spread_over_retain(outputs, targets, PARAMS["temperature"]))
        for batch in batches(retain_loader, retain_steps):
            step(retain_opt, F.cross_entropy(net(batch["image"].to(device)), batch["age_group"].to(device)))
    net.eval()
    return net


def kl_to_uniform(logits):
    """KL(uniform || softmax): zero only when every class is equally likely, as for a never-seen image."""
    uniform = torch.full_like(logits, 1.0 / logits.shape[1])
    return F.kl_div(F.log_softmax(logits, 1), uniform, reduction="batchmean")


def spread_over_retain(forget_out, retain_out, temperature):
    """Every retain output counts as a positive of every forget output with equal weight: the mean
    of -log softmax over the retain batch is smallest when a forget output is equally similar to all
    of them, i.e. no longer sits inside the cluster of its memorised label."""
    similarity = forget_out @ retain_out.T / temperature
    return -F.log_softmax(similarity, dim=1).mean()


def step(optimizer, loss):
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def batches(loader, steps):
    """`steps` batches, reshuffled on every pass: the budget is counted in steps, not whole epochs."""
    while True:
        for batch in loader:
            if steps <= 0:
                return
            steps -= 1
            yield batch
