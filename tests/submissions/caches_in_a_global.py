"""Hostile: five epochs of fine-tuning in the first run (about 1.5 budgets, in the tiny preset as in the default one),
kept in a module global; every later run hands back that cached copy plus a little noise. If the runs shared one
process, the submission would be charged one run's work for N runs, well within its N budgets; each run is a
process of its own, so each pays the five epochs, and the N runs are over their N budgets."""

import copy

import torch
import torch.nn.functional as F

CACHE: dict = {}


def unlearning(net, retain_loader, forget_loader, val_loader):
    if "state" in CACHE:
        net.load_state_dict(CACHE["state"])
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1e-4 * torch.randn_like(p))
        return
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    net.train()
    for _ in range(5):
        for batch in retain_loader:
            optimizer.zero_grad()
            F.cross_entropy(net(batch["image"].to(DEVICE)), batch["age_group"].to(DEVICE)).backward()  # noqa: F821 - DEVICE is the kit's
            optimizer.step()
    net.eval()
    CACHE["state"] = copy.deepcopy(net.state_dict())
