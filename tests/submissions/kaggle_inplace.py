"""The 2023 Kaggle notebook's form, unchanged: fine-tunes `net` in place and returns nothing.

DEVICE is not defined here, as it was defined in another cell of the Kaggle notebook.
"""

import torch
from torch import nn, optim


def unlearning(net, retain_loader, forget_loader, val_loader):
    epochs = 1
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    net.train()
    for ep in range(epochs):
        net.train()
        for sample in retain_loader:
            inputs = sample["image"]
            targets = sample["age_group"]
            inputs, targets = inputs.to(DEVICE), targets.to(DEVICE)  # noqa: F821 - the notebook's global
            optimizer.zero_grad()
            outputs = net(inputs)
            loss = criterion(outputs, targets)
            loss.backward()
            optimizer.step()
        scheduler.step()
    net.eval()
