"""The paired comparison of two results on one pool (challenge.scoring.compare), on synthetic confidences.

Scored results through `challenge compare` are in tests/test_baselines.py (they reuse its scored
baselines); here the numbers: P, the difference's interval, and what pairing buys.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from challenge.errors import ChallengeError
from challenge.scoring.compare import (
    Confidences,
    compare_forgetting,
    compare_kept,
    draw_key,
    read_confidences,
    write_confidences,
)
from challenge.scoring.metric import evaluate_forgetting

N, K = 16, 40


def pool(seed: int = 0) -> tuple[np.random.Generator, np.ndarray, np.ndarray]:
    """Retrained confidences [N, K] around per-example locations, and those locations."""
    rng = np.random.default_rng(seed)
    loc = rng.normal(2, 3, K)
    return rng, loc, rng.normal(loc, 1.0, (N, K))


def test_identical_results_are_a_coin_flip_and_not_separated() -> None:
    rng, loc, r = pool()
    u = rng.normal(loc, 1.0, (N, K))
    c = compare_forgetting(u, u.copy(), r, n_bootstrap=50)
    assert c.forget_quality_a == c.forget_quality_b and c.difference == 0.0
    assert c.difference_ci == (0.0, 0.0) and c.p_a_above == 0.5  # every replicate draws the same runs of both
    assert not c.separated


def test_a_method_that_forgets_is_separated_from_one_that_does_not() -> None:
    rng, loc, r = pool(1)
    good, bad = rng.normal(loc, 1.0, (N, K)), rng.normal(loc + 3.0, 1.0, (N, K))
    c = compare_forgetting(good, bad, r, n_bootstrap=50, seed=3)
    assert c.p_a_above == 1.0 and c.separated and c.difference_ci[0] > 0.0
    assert compare_forgetting(bad, good, r, n_bootstrap=50, seed=3).p_a_above == 0.0


def test_each_sides_f_is_the_scorers_f_bit_for_bit() -> None:
    rng, loc, r = pool(2)
    a, b = rng.normal(loc, 1.0, (N, K)), rng.normal(loc + 0.7, 1.2, (N, K))
    c = compare_forgetting(a, b, r, n_bootstrap=10)
    acc = [0.9] * N
    fs = [
        evaluate_forgetting(
            u,
            r,
            retain_acc_unlearned=acc,
            retain_acc_retrained=acc,
            test_acc_unlearned=acc,
            test_acc_retrained=acc,
            n_bootstrap=0,
        ).forget_quality
        for u in (a, b)
    ]
    assert (c.forget_quality_a, c.forget_quality_b) == tuple(fs)
    assert c.difference == fs[0] - fs[1]


def test_pairing_is_narrower_than_two_intervals_when_methods_are_close() -> None:
    """Both methods forget the same half of the examples (the rest stay 3 sd away), B with a little
    more noise: which examples were drawn moves both F alike and cancels in the difference, so the
    paired interval is clearly narrower than unpaired ones would give (their widths in quadrature)."""
    rng, loc, r = pool(3)
    remembered = np.where(np.arange(K) % 2 == 0, 3.0, 0.0)
    a = rng.normal(loc + remembered, 1.0, (N, K))
    b = a + rng.normal(0, 0.05, (N, K))
    acc = [0.9] * N
    widths = []
    for u in (a, b):
        lo, hi = evaluate_forgetting(
            u,
            r,
            retain_acc_unlearned=acc,
            retain_acc_retrained=acc,
            test_acc_unlearned=acc,
            test_acc_retrained=acc,
            n_bootstrap=50,
        ).forget_quality_ci
        widths.append(hi - lo)
    lo, hi = compare_forgetting(a, b, r, n_bootstrap=50).difference_ci
    assert hi - lo < 0.8 * float(np.hypot(*widths)), (
        hi - lo,
        widths,
    )  # 0.33 of it here (0.68 when each side drew its own runs)


def test_the_comparison_is_seeded() -> None:
    rng, loc, r = pool(4)
    a, b = rng.normal(loc + 0.3, 1.0, (N, K)), rng.normal(loc + 0.6, 1.0, (N, K))
    one, two, other = (compare_forgetting(a, b, r, n_bootstrap=30, seed=s) for s in (5, 5, 6))
    assert one == two and one.difference_ci != other.difference_ci


def test_bad_inputs_are_named() -> None:
    _, _, r = pool()
    with pytest.raises(ValueError, match="n_bootstrap must be a positive integer; got 0"):
        compare_forgetting(r, r, r, n_bootstrap=0)
    with pytest.raises(ValueError, match="unlearned has 15 models but retrained has 16"):
        compare_forgetting(r, r[:-1], r)


def test_kept_confidences_round_trip_and_refuse_other_pools(tmp_path: Path) -> None:
    rng, loc, r = pool(5)
    a = Confidences(rng.normal(loc, 1.0, (N, K)).astype(np.float32), r, "pool-aaaa")
    write_confidences(tmp_path / "a.npz", a)
    back = read_confidences(tmp_path / "a.npz")
    assert back.unlearned.dtype == back.retrained.dtype == np.float64 and back.pool_fingerprint == "pool-aaaa"
    np.testing.assert_array_equal(back.retrained, r)
    other = Confidences(a.unlearned, r, "pool-bbbb")
    with pytest.raises(
        ChallengeError, match=r"^the results were scored on different pools \(pool-aaaa and pool-bbbb\)"
    ):
        compare_kept(back, other)
    fewer = Confidences(a.unlearned[:8], r[:8], "pool-aaaa")
    with pytest.raises(ChallengeError, match=r"different retrained models \(16 and 8 of pool pool-aaaa\)"):
        compare_kept(back, fewer)
    (tmp_path / "broken.npz").write_bytes(b"not an npz")
    with pytest.raises(ChallengeError, match="cannot read .*broken.npz"):
        read_confidences(tmp_path / "broken.npz")


def test_kept_replicates_give_the_same_comparison_bit_for_bit_and_are_ignored_for_other_draws(tmp_path: Path) -> None:
    """The scorer keeps each result's interval replicates; comparing with them must equal computing them."""
    rng, loc, r = pool(6)
    acc = [0.9] * N
    kept = []
    for name, shift in (("a", 0.3), ("b", 0.8)):
        u = rng.normal(loc + shift, 1.0, (N, K))
        res = evaluate_forgetting(
            u,
            r,
            retain_acc_unlearned=acc,
            retain_acc_retrained=acc,
            test_acc_unlearned=acc,
            test_acc_retrained=acc,
            n_bootstrap=40,
            seed=7,
        )
        write_confidences(tmp_path / f"{name}.npz", Confidences(u, r, "pool-1", res.replicates, draw_key(7, 40)))
        kept.append(read_confidences(tmp_path / f"{name}.npz"))
    assert kept[0].draw == draw_key(7, 40) and len(kept[0].replicates) == 40
    bare = [replace(c, replicates=None, draw="") for c in kept]
    assert compare_kept(*kept, n_bootstrap=40, seed=7) == compare_kept(*bare, n_bootstrap=40, seed=7)
    assert compare_kept(*kept, n_bootstrap=30, seed=7) == compare_kept(
        *bare, n_bootstrap=30, seed=7
    )  # other count: recomputed
    wrong = [replace(kept[0], replicates=kept[0].replicates[::-1].copy()), kept[1]]  # used only where the draw matches
    assert compare_kept(*wrong, n_bootstrap=40, seed=8) == compare_kept(*bare, n_bootstrap=40, seed=8)
    assert (
        compare_kept(*wrong, n_bootstrap=40, seed=7).difference_ci
        != compare_kept(*kept, n_bootstrap=40, seed=7).difference_ci
    )
