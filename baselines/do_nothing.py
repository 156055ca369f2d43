"""Do nothing: return the original model unchanged — the floor of the leaderboard.

Source: the trivial reference point of the NeurIPS 2023 Machine Unlearning Challenge
(Triantafillou et al., "Are we making progress in unlearning? Findings from the first NeurIPS
unlearning competition", arXiv:2406.09073). Every run returns the same weights, so the unlearned
confidences form a point mass that any spread of retrained models tells apart: F is 0.
"""


def unlearning(net, retain_loader, forget_loader, val_loader):
    """Keep everything, forget nothing."""
    return net
