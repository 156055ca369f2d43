"""The CIFAR starting kit's loop, `for inputs, targets in loader`: batches here are dicts."""

from torch import nn, optim


def unlearning(net, retain_loader, forget_loader, val_loader):
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=0.01)
    net.train()
    for inputs, targets in retain_loader:
        optimizer.zero_grad()
        criterion(net(inputs), targets).backward()
        optimizer.step()
