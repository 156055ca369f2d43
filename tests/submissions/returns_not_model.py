"""Verdict not_a_model: returns the state dict instead of the model."""


def unlearning(net, retain_loader, forget_loader, val_loader):
    return net.state_dict()
