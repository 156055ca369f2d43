"""Hostile: reaches out to the internet at run time (to send the data away, or to fetch a retrained model)."""

import socket


def unlearning(net, retain_loader, forget_loader, val_loader):
    with socket.create_connection(("1.1.1.1", 443), timeout=5):
        pass
