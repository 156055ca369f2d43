"""A starting point: fine-tune on the retain set for one epoch (the 2023 Kaggle starting kit's baseline).

The contract (see submissions/README.md): define `unlearning(net, retain_loader, forget_loader,
val_loader)`. Change `net` in place and return nothing, as here, or return a model of the same
architecture. Batches are dicts with `image`, `age_group`, `age`, `person_id` and `image_id`.
Score it with `challenge score submissions/template.py`.
"""

import torch
from torch import nn, optim

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def unlearning(net, retain_loader, forget_loader, val_loader):
    """Catastrophic forgetting by fine-tuning: one epoch of SGD on the retain set only."""
    epochs = 1
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    net.to(DEVICE)
    net.train()
    for _ in range(epochs):
        for sample in retain_loader:
            inputs, targets = sample["image"].to(DEVICE), sample["age_group"].to(DEVICE)
            optimizer.zero_grad()
            loss = criterion(net(inputs), targets)
            loss.backward()
            optimizer.step()
        scheduler.step()
    net.eval()
