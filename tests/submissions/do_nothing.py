"""Returns the original model unchanged: N identical outputs, the worst forgetting quality."""


def unlearning(net, retain_loader, forget_loader, val_loader):
    return net
