"""SCRUB: max-min teacher-student distillation (Kurmanji et al., NeurIPS 2023).

Source: Kurmanji, Triantafillou, Hayes & Triantafillou, "Towards Unbounded Machine Unlearning",
NeurIPS 2023 (arXiv:2302.09880; github.com/meghdadk/SCRUB). The original model is a frozen
teacher; the student (the model being unlearned) alternates "max" steps that push its outputs away
from the teacher's on the forget set with "min" steps that stay close to the teacher (and to the
labels) on the retain set. Max steps are interleaved with the first min steps and stop after
max_steps, so that the last steps only repair utility, as in the paper's schedule.
Hyperparameters found by `challenge tune baselines/scrub.py tune.trials=20` on 2026-12-04: 20 TPE trials
(0 failed) maximising the final score at N=16 on the tuning split (data.split.seed=1); trial 0 was the
file's earlier values (lr 0.003, max_steps 6, min_epochs 1.0), which scored 0.057 there. Best: trial 16,
0.059 (lr 0.00284, max_steps 5, min_epochs 1.03), shipped rounded to three significant digits.

Before `challenge tune`, by hand: tuned for the kit's default preset within its time budget: on
2026-12-03, eleven settings of max_steps (3-8), min_epochs (0.55-1.3) and lr (0.002-0.0075) scored at
N=16 on a tuning split (data.split.seed=1, not the default split) took the final score from 0.018 (6,
0.55, 0.0075) to 0.057: a smaller step keeps retain accuracy (ratio 0.38 -> 0.74), at about half the
budget.
"""

import copy

import torch
import torch.nn.functional as F

PARAMS = {  # read in unlearning(); `challenge score FILE +params.lr=...` or params_file=best.json change them
    "max_steps": 5,  # forget batches of the max phase (the forget set is a batch or two)
    "min_epochs": 1.03,  # passes over the retain set in the min phase
    "max_every": 2,  # one max step after every max_every min steps, until max_steps are done
    "lr": 0.00284,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "temperature": 4.0,
    "alpha": 1.0,  # weight of the distillation loss in the min steps
    "gamma": 1.0,  # weight of the cross-entropy in the min steps
}
SEARCH = {  # what `challenge tune` searches (Hydra's optuna-sweeper grammar)
    "max_steps": "range(2, 10)",
    "min_epochs": "interval(0.5, 1.5)",
    "lr": "tag(log, interval(0.001, 0.01))",
}


def unlearning(net, retain_loader, forget_loader, val_loader):
    """Interleave forget-set max steps with retain-set min steps, the original as teacher."""
    device = next(net.parameters()).device
    teacher = copy.deepcopy(net).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=PARAMS["lr"], momentum=PARAMS["momentum"], weight_decay=PARAMS["weight_decay"]
    )
    forget_batches = batches(forget_loader, PARAMS["max_steps"])
    net.train()
    for i, batch in enumerate(batches(retain_loader, max(1, round(PARAMS["min_epochs"] * len(retain_loader))))):
        if i % PARAMS["max_every"] == 0:
            forget = next(forget_batches, None)
            if forget is not None:
                images = forget["image"].to(device)
                step(optimizer, -distill_kl(net(images), teacher(images)))
        images, labels = batch["image"].to(device), batch["age_group"].to(device)
        logits = net(images)
        step(
            optimizer,
            PARAMS["alpha"] * distill_kl(logits, teacher(images)) + PARAMS["gamma"] * F.cross_entropy(logits, labels),
        )
    net.eval()
    return net


def step(optimizer, loss):
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


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
