"""Paired comparison of two results scored on one pool: how sure is it that A's F is above B's?

Two results on one pool share the retrained models and the forget examples, so the question "is A
better than B" is about one difference, not two intervals: F_A and F_B move together with the
draw of reference models and of examples, and an overlap of their intervals says little. Each
bootstrap replicate here draws the same indices for both sides: the same retrained models, the
same examples, and the same run indices of the unlearned models. The last pairs run i of A with
run i of B, which the scorer gave the same seed (the same data order); runs i = 1..N are
independent pairs, so resampling them as pairs is a valid bootstrap whether or not the two runs
of a pair are alike. The replicates' differences, median-shifted onto F_A - F_B as in
challenge.scoring.metric's interval, give the difference's interval and P(F_A > F_B).

Because the draws are those of F's own interval (Resamples.seeded, same seed and count), each
side's replicates are the ones the scorer computed for its interval: it keeps them, with the
per-model confidences, beside each result.json in CONFIDENCES_FILE (written and read here, so the
format has one owner), and a comparison of two such results costs no epsilon at all. A leaderboard
of T teams then costs T interval computations, not 2(T - 1) more.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from challenge.errors import ChallengeError
from challenge.files import write_with
from challenge.scoring.epsilon import (
    DELTA,
    _check_confidences,
    _check_options,
    _epsilons,
)
from challenge.scoring.metric import forget_score, replicate_scores
from challenge.scoring.resampling import Resamples, shifted_interval
from challenge.scoring.result import Result

CONFIDENCES_FILE = "forget_confidences.npz"


# -- the kept confidences ------------------------------------------------------------------------
@dataclass(frozen=True)
class Confidences:
    """One result's forget confidences: unlearned and retrained [N models, K examples], and its pool;
    optionally its interval's replicates [B] and the draws they came from (`draw_key`)."""

    unlearned: np.ndarray
    retrained: np.ndarray
    pool_fingerprint: str
    replicates: np.ndarray | None = None
    draw: str = ""


def draw_key(seed: int, n_bootstrap: int, delta: float = DELTA, thresholds: str = "grid") -> str:
    """What a replicate vector depends on besides the confidences: reusable only where all match."""
    return f"seed={int(seed)} n_bootstrap={int(n_bootstrap)} delta={float(delta)!r} thresholds={thresholds}"


def write_confidences(path: Path, c: Confidences) -> None:
    """float64 arrays and strings: readable without pickle."""
    arrays = {
        "unlearned": np.asarray(c.unlearned, np.float64),
        "retrained": np.asarray(c.retrained, np.float64),
        "pool_fingerprint": np.array(c.pool_fingerprint),
    }
    if c.replicates is not None:
        arrays |= {"replicates": np.asarray(c.replicates, np.float64), "draw": np.array(c.draw)}
    write_with(path, lambda tmp: np.savez(tmp, **arrays))


def read_confidences(path: Path) -> Confidences:
    """The kept confidences, or ChallengeError naming the file and the fix; a result scored with
    n_bootstrap=0 kept no replicates, and its comparisons compute them."""
    try:
        with np.load(path, allow_pickle=False) as z:
            reps = (z["replicates"], str(z["draw"])) if "replicates" in z.files else (None, "")
            return Confidences(z["unlearned"], z["retrained"], str(z["pool_fingerprint"]), *reps)
    except (OSError, ValueError, KeyError) as e:
        raise ChallengeError(f"cannot read {path} ({e}): score the submission again to rewrite it") from None


# -- the comparison ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """F of both sides, their difference with its interval, and the bootstrap's P(F_A > F_B)."""

    forget_quality_a: float
    forget_quality_b: float
    difference: float
    difference_ci: tuple[float, float]
    p_a_above: float
    ci_level: float
    n_bootstrap: int
    seed: int

    @property
    def separated(self) -> bool:
        """True when the difference's interval excludes 0: the evaluation tells A and B apart."""
        low, high = self.difference_ci
        return low > 0.0 or high < 0.0


def compare_forgetting(
    unlearned_a: Any,
    unlearned_b: Any,
    retrained: Any,
    *,
    n_bootstrap: int = 1000,
    ci_level: float = 0.95,
    seed: int = 0,
    delta: float = DELTA,
    thresholds: str = "grid",
    replicates_a: np.ndarray | None = None,
    replicates_b: np.ndarray | None = None,
) -> Comparison:
    """Paired bootstrap of F_A - F_B; both sides were scored against the same retrained models.

    P(F_A > F_B) is the share of bias-corrected replicate differences above 0, ties counted half,
    so two identical results get exactly 0.5. `replicates_a/b`, when given, must be that side's F
    on Resamples.seeded(seed, N, K, n_bootstrap) (what evaluate_forgetting returns for its interval).
    """
    _check_options(delta, thresholds)
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be a positive integer; got {n_bootstrap}")
    ua, r = _check_confidences(unlearned_a, retrained)
    ub, _ = _check_confidences(unlearned_b, retrained)
    if ua.shape != ub.shape:
        raise ValueError(f"both sides need the same [models, examples] shape; got {ua.shape} and {ub.shape}")
    draws = Resamples.seeded(seed, *r.shape, int(n_bootstrap))
    fa, fb = (forget_score(_epsilons(u, r, delta, thresholds), r.shape[0]) for u in (ua, ub))
    reps = [
        given if given is not None else replicate_scores(u, r, draws, delta, thresholds)
        for u, given in ((ua, replicates_a), (ub, replicates_b))
    ]
    if any(len(x) != n_bootstrap for x in reps):
        raise ValueError(f"replicates must have n_bootstrap ({n_bootstrap}) entries; got {[len(x) for x in reps]}")
    d = reps[0] - reps[1]
    shifted = d + ((fa - fb) - np.median(d))
    p = float(np.mean(shifted > 0) + 0.5 * np.mean(shifted == 0))
    ci = shifted_interval(d, fa - fb, ci_level, (-1.0, 1.0))
    return Comparison(fa, fb, fa - fb, ci, p, float(ci_level), int(n_bootstrap), int(seed))


def compare_kept(a: Confidences, b: Confidences, n_bootstrap: int = 1000, seed: int = 0) -> Comparison:
    """The comparison of two kept confidences, or ChallengeError when they are not on one footing."""
    if a.pool_fingerprint != b.pool_fingerprint:
        raise ChallengeError(
            f"the results were scored on different pools ({a.pool_fingerprint} and {b.pool_fingerprint}): "
            "a paired comparison needs both scored on the same pool"
        )
    if a.retrained.shape != b.retrained.shape or not np.array_equal(a.retrained, b.retrained):
        raise ChallengeError(
            f"the results were scored against different retrained models ({a.retrained.shape[0]} and "
            f"{b.retrained.shape[0]} of pool {a.pool_fingerprint}): score both with the same scorer.n_runs"
        )
    key = draw_key(seed, n_bootstrap)
    kept = [c.replicates if c.replicates is not None and c.draw == key else None for c in (a, b)]
    return compare_forgetting(
        a.unlearned,
        b.unlearned,
        a.retrained,
        n_bootstrap=n_bootstrap,
        seed=seed,
        replicates_a=kept[0],
        replicates_b=kept[1],
    )


# -- result files --------------------------------------------------------------------------------
def load_scored(result_path: Path) -> tuple[Result, Confidences]:
    """A scored result.json and its kept confidences, or ChallengeError naming the problem and the fix."""
    if not result_path.is_file():
        raise ChallengeError(
            f"no result at {result_path}: give the result.json that `challenge score` wrote in its run folder"
        )
    result = Result.read(result_path)
    if not result.scored:
        raise ChallengeError(
            f"{result_path} is not a scored result (status {result.status}): "
            "only a scored submission has an F to compare; fix it and score it again"
        )
    path = result_path.parent / (result.forget_confidences or CONFIDENCES_FILE)
    if not result.forget_confidences or not path.is_file():
        raise ChallengeError(
            f"{result_path} has no {CONFIDENCES_FILE} beside it (the file was moved): "
            "score the submission again, and keep the two files together"
        )
    kept = read_confidences(path)
    fingerprint = result.pool.fingerprint
    if kept.pool_fingerprint != fingerprint:
        raise ChallengeError(
            f"{path} is from pool {kept.pool_fingerprint} but {result_path} from pool {fingerprint}: "
            "they are not one result's files; score the submission again"
        )
    return result, kept
