"""Collateral damage: is an unlearned model still indistinguishable from a retrained one on what it should keep?

Unlearning can change a model on the images it keeps, even make retain examples easier to attack (Hayes et al.
2024; RULI, USENIX Security 2025), which mean accuracy ratios do not show. So the pool keeps each retrained
model's outputs on a fixed sample of retain images and of test images (`pool.collateral` of each: null, as
many as the forget set; 0, none), and the judge scores the unlearned models' outputs on the same images with
the forget set's own metric: the epsilon-based F, with its two-way bootstrap interval. A retain-side F near
the ceiling means the unlearned models cannot be told from retrained ones on what they should keep; a low one,
that unlearning left a trace there. The sample is evenly spaced over each part (in split order, so it spans
the people), the same for the pool and the judge, and its size is in the pool's fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

PARTS = ("retain", "test")


@dataclass(frozen=True)
class CollateralF:
    """F of one part's sample (result.json's score.collateral): the forget set's metric on images the models
    should keep; near the ceiling, unlearning left no trace there."""

    part: str
    n_examples: int
    forget_quality: float
    forget_quality_ci: list[float] | None
    ceiling: float | None = None  # what retraining itself scores here (the pool's held-out half), where known


def sample_size(setting: Any, n_forget: int) -> int:
    """`pool.collateral` as a count of images per part: null, as many as the forget set."""
    return n_forget if setting is None else int(setting)


def sample_positions(n: int, k: int) -> np.ndarray:
    """k positions evenly spaced over a part of n images (all of them when k >= n)."""
    k = min(k, n)
    return (np.arange(k) * n) // k if k else np.zeros(0, np.int64)


def sampled(images: torch.Tensor, groups: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The sample's images and labels out of a part's (tensors in split order)."""
    import torch  # here: result.json's types import this module, and reading a result needs no torch

    positions = torch.from_numpy(sample_positions(len(images), k))  # on the CPU: it indexes a tensor on any device
    return images[positions.to(images.device)], groups[positions.to(groups.device)]


def collateral_f(
    unlearned: dict[str, np.ndarray], retrained: dict[str, np.ndarray], metric: Any
) -> list[CollateralF] | None:
    """F per part from [N, k] confidences on each sample, with F's own bootstrap settings (`metric`, a
    ForgettingResult); None where the pool kept no sample."""
    from challenge.scoring.metric import _bootstrap_ci, forget_score, per_example_epsilon

    parts = []
    for part in PARTS:
        u, r = unlearned.get(part), retrained.get(part)
        if u is None or r is None or r.shape[1] == 0:
            continue
        f = forget_score(per_example_epsilon(u, r, metric.delta, metric.thresholds), len(u))
        ci = None
        if metric.n_bootstrap:
            args = (metric.delta, metric.thresholds, metric.n_bootstrap, metric.ci_level, metric.seed)
            ci = list(_bootstrap_ci(u, r, f, *args)[0])
        parts.append(CollateralF(part, int(r.shape[1]), f, ci))
    return parts or None
