"""Bootstrap replicates of per-example statistics: which models and examples each replicate draws, and the
means over them, for F's interval (challenge.scoring.metric), the attacks' and the strata's
(challenge.scoring.attacks) and the paired comparisons (challenge.scoring.compare).

The expensive part of a replicate is the per-example statistic on its drawn models; the means over its
drawn examples are cheap. So one pass serves every mean wanted from it: the mean over all the drawn
examples and the means within groups of them (``replicate_means_by_group``), e.g. F and F per
memorisation stratum from the same epsilons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

PerExample = Callable[[np.ndarray, np.ndarray], np.ndarray]  # [N, C] unlearned, retrained -> [S, C] statistics
_VALUES_PER_CHUNK = 1 << 22  # confidences per side handed to a statistic at once: 32 MB of float64


@dataclass(frozen=True)
class Resamples:
    """Which models and which forget examples each bootstrap replicate draws (with replacement).

    Kept as indices so that two results scored on one pool can share them (challenge.scoring.compare):
    with the same seed every result on a pool is resampled alike, so each result's replicates,
    computed once for its interval, serve every comparison it takes part in.
    """

    unlearned: np.ndarray  # [B, N] model indices
    retrained: np.ndarray  # [B, N] model indices
    examples: np.ndarray  # [B, K] example indices

    @classmethod
    def seeded(cls, seed: int, n_models: int, n_examples: int, n_bootstrap: int) -> Resamples:
        """The draws of F's interval for this seed: the same for every result of that shape."""
        rng = np.random.default_rng(seed)

        def models() -> np.ndarray:
            return rng.integers(0, n_models, (n_bootstrap, n_models))

        return cls(models(), models(), rng.integers(0, n_examples, (n_bootstrap, n_examples)))


@dataclass(frozen=True)
class _Pass:
    """One pass of a statistic over every replicate's distinct drawn examples."""

    rep: np.ndarray  # replicate of each (replicate, example) cell
    col: np.ndarray  # example of each cell
    counts: np.ndarray  # how often the replicate drew the example
    values: np.ndarray  # [S, cells] the statistics
    n_bootstrap: int
    k: int

    def means(self) -> np.ndarray:
        """[B, S]: each replicate's mean over its drawn examples (an example drawn m times counts m times)."""
        b = self.n_bootstrap
        return np.stack([np.bincount(self.rep, weights=v * self.counts, minlength=b) / self.k for v in self.values], 1)

    def group_means(self, groups: np.ndarray) -> np.ndarray:
        """[B, S, G]: the means within each group of examples (NaN for a group a replicate did not draw)."""
        n_groups = int(groups.max()) + 1
        cell = self.rep * n_groups + groups[self.col]
        sizes = np.bincount(cell, weights=self.counts, minlength=self.n_bootstrap * n_groups)
        with np.errstate(invalid="ignore"):
            means = [np.bincount(cell, weights=v * self.counts, minlength=len(sizes)) / sizes for v in self.values]
        return np.stack(means, axis=1).reshape(self.n_bootstrap, len(self.values), n_groups)


def _pass(unlearned: np.ndarray, retrained: np.ndarray, draws: Resamples, per_example: PerExample) -> _Pass:
    """Each replicate's distinct examples, with that replicate's models, become columns of one wide [N, C]
    problem that ``per_example`` solves in chunks. About 63% of the drawn examples are distinct, so a
    replicate costs less than one full pass."""
    n, k = unlearned.shape
    n_bootstrap = len(draws.examples)
    ids, counts = np.unique(draws.examples + k * np.arange(n_bootstrap)[:, None], return_counts=True)
    rep, col = np.divmod(ids, k)
    chunks, step = [], max(1, _VALUES_PER_CHUNK // n)
    for s in range(0, len(ids), step):
        b, c = rep[s : s + step], col[s : s + step]
        chunks.append(
            np.atleast_2d(per_example(unlearned[draws.unlearned[b].T, c], retrained[draws.retrained[b].T, c]))
        )
    return _Pass(rep, col, counts, np.concatenate(chunks, axis=1), n_bootstrap, k)


def replicate_means(
    unlearned: np.ndarray,
    retrained: np.ndarray,
    draws: Resamples,
    per_example: PerExample,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Each replicate's mean over its drawn examples of S per-example statistics: [B, S], or [B, S, G] means
    within each of G groups of examples (``groups``: an int label per example; NaN for a group left undrawn)."""
    done = _pass(unlearned, retrained, draws, per_example)
    return done.means() if groups is None else done.group_means(groups)


def replicate_means_by_group(
    unlearned: np.ndarray, retrained: np.ndarray, draws: Resamples, per_example: PerExample, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Both from one pass: [B, S] over all the drawn examples (the bits of ``replicate_means``) and [B, S, G]."""
    done = _pass(unlearned, retrained, draws, per_example)
    return done.means(), done.group_means(groups)


def shifted_interval(
    scores: np.ndarray, centre: float, ci_level: float, bounds: tuple[float, float] = (0.0, 1.0)
) -> tuple[float, float]:
    """Percentile interval of the replicates, moved so that their median sits on ``centre``."""
    alpha = (1.0 - ci_level) / 2.0
    low, high = np.quantile(scores, [alpha, 1.0 - alpha]) + (centre - np.median(scores))
    return float(max(low, bounds[0])), float(min(high, bounds[1]))
