"""Bad Teacher: distil from the original on the retain set and from a randomly initialised net on the forget set.

Source: Chundawat, Tarun, Mandal & Kankanhalli, "Can Bad Teaching Induce Forgetting? Unlearning in
Deep Networks Using an Incompetent Teacher", AAAI 2023 (arXiv:2205.08096). The student starts as the
original model; each image's target is the softened output of the competent teacher (the original)
if it is a retain image and of an incompetent teacher (the same architecture, randomly initialised)
if it is a forget image, and the student minimises KL(target || student) over mixed batches.
Adapted to the kit: a step's batch is one retain batch plus a random draw of `forget_share` x 64
forget images (the paper mixes the forget set with 30% of the retain set; 0.5 is about that ratio
here), the net is re-initialised by each layer's own reset_parameters(), and both teachers are
frozen in eval mode.
Hyperparameters found by `challenge tune baselines/bad_teacher.py tune.trials=10` on 2026-12-04: 10 TPE
trials (0 failed) maximising the final score at N=16 on the tuning split (data.split.seed=1); trial 0
was the file's earlier values (forget_share 0.5, lr 0.002, steps 10), which scored 0.064 there. They
stayed the best, so they are kept.

Before `challenge tune`, by hand: tuned on the tuning split (data.split.seed=1, N=16), 2026-12-03: 10
steps at lr 0.001 gave final 0.054, 14 steps 0.047, 10 steps at lr 0.002 0.064 (F 0.086, retain ratio
0.88), kept.
"""

import copy

import torch
import torch.nn.functional as F

PARAMS = {
    "steps": 10,  # mixed batches (a retain batch each)
    "lr": 0.002,  # Adam, as in the paper (which used 1e-4 for 1 epoch on larger sets)
    "forget_share": 0.5,  # forget images per step, as a fraction of the retain batch
    "temperature": 1.0,  # KL temperature (the paper's default 1)
}
SEARCH = {
    "steps": "range(4, 16)",
    "lr": "tag(log, interval(0.0001, 0.01))",
    "forget_share": "interval(0.25, 1.0)",
}


def unlearning(net, retain_loader, forget_loader, val_loader):
    """Minimise KL(teacher || student), the teacher chosen per image by whether it is to be forgotten."""
    device = next(net.parameters()).device
    good = frozen(copy.deepcopy(net))
    bad = frozen(randomly_initialised(copy.deepcopy(net)))
    forget_images = torch.cat([b["image"] for b in forget_loader]).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=PARAMS["lr"])
    net.train()
    for batch in batches(retain_loader, PARAMS["steps"]):
        retain = batch["image"].to(device)
        k = max(1, min(len(forget_images), round(PARAMS["forget_share"] * len(retain))))
        forget = forget_images[torch.randperm(len(forget_images), device=device)[:k]]
        with torch.no_grad():
            target = torch.cat([good(retain), bad(forget)])
        loss = distill_kl(net(torch.cat([retain, forget])), target, PARAMS["temperature"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    return net


def randomly_initialised(net):
    """Every layer back to its default initialisation (BatchNorm's running statistics too): the bad teacher."""
    for module in net.modules():
        if module is not net and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return net


def frozen(net):
    """Eval mode, no gradients: a teacher's outputs are targets, not something to train."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def distill_kl(student_logits, teacher_logits, t):
    """KL(teacher || student) on temperature-softened outputs, averaged over the batch."""
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.softmax(teacher_logits / t, 1), reduction="batchmean")


def batches(loader, steps):
    """`steps` batches, reshuffled on every pass: the budget is counted in steps, not whole epochs."""
    while True:
        for batch in loader:
            if steps == 0:
                return
            steps -= 1
            yield batch
