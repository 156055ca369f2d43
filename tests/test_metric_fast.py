"""The fast epsilon (challenge.scoring.epsilon, .intervals) against the plain transcription of the
published definition in tests/test_metric.py, bit for bit, on the inputs that stress its shortcuts:
ties, identical confidences, saturation at +-103.6, collapsed (peaky) sides, 401 right ends, one
or two models, chunk boundaries and any thread count.

The fast path bounds blocks of interval rules and scores only those that can win; the bounds rest
on epsilon never rising with false positives nor falling with true positives, which the table
itself is checked for. Where the published code fails (every rule discarded: NaN in the slow
reference) the kit gives 0.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from challenge.scoring import epsilon, intervals
from challenge.scoring.epsilon import DELTA, _bound_table, _epsilon_table, _epsilons, per_example_epsilon
from tests.test_metric import draw, grid_size, slow_epsilons

SATURATION = 103.61632918473206  # -log(1e-45): where logit-scaled confidences stop


def edge_columns(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[n, 12] unlearned and retrained confidences, one hard case per column."""
    rng = np.random.default_rng(seed)
    u, r = rng.normal(0.0, 1.0, (n, 12)), rng.normal(0.3, 1.2, (n, 12))
    u[:, 0] = r[:, 0] = 1.25  # all 2N identical: every rule discarded
    u[:, 1] = 0.5  # one side constant: spread ratio 0, the cap
    u[:, 2], r[:, 2] = SATURATION, np.where(rng.random(n) < 0.5, SATURATION, r[:, 2])  # saturated, tied at the top
    u[:, 3], r[:, 3] = -SATURATION, np.r_[-SATURATION, rng.normal(-100.0, 2.0, n - 1)]  # saturated at the bottom
    u[:, 4] = 2.0 + 0.015 * u[:, 4]  # peaky but not capped (spread ratio about 0.015)
    u[:, 5] = 2.0 + 0.011 * u[:, 5]  # peaky, near the 0.01 cap
    u[:, 6] += 30.0  # far apart: perfect separation, infinity, the cap
    u[:, 7], r[:, 7] = np.round(u[:, 7]), np.round(r[:, 7])  # heavy ties on whole numbers
    u[:, 8], r[:, 8] = np.round(u[:, 8], 1), np.round(r[:, 8], 1)
    u[:, 9] = r[:, 9]  # the same confidences on both sides
    u[:, 10], r[:, 10] = np.round(u[:, 10] * 0.05, 2), np.round(r[:, 10] * 0.05, 2)  # narrow, on the 0.01 grid
    u[:, 11] = r[:, 11] + 1e-9  # within rounding of one another
    return u, r


def same_as_slow(u: np.ndarray, r: np.ndarray) -> None:
    want = slow_epsilons(u, r)
    got = _epsilons(u, r, DELTA, "grid")
    failed = np.isnan(want)  # the published code fails there; the kit gives 0
    np.testing.assert_array_equal(got[~failed], want[~failed])
    np.testing.assert_array_equal(got[failed], 0.0)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_edge_cases_equal_the_slow_reference(n: int) -> None:
    same_as_slow(*edge_columns(n, seed=n))


@pytest.mark.parametrize(("seed", "decimals"), [(21, None), (22, 0), (23, 1), (24, 2)])
def test_random_ties_equal_the_slow_reference(seed: int, decimals: int | None) -> None:
    u, r = draw(seed, n=11, k=10, shift=0.4, decimals=decimals)
    same_as_slow(u, r)


def test_401_right_ends_with_ties_equal_the_slow_reference() -> None:
    u, r = draw(seed=12, n=6, k=800, shift=0.2, decimals=1)
    pick = np.flatnonzero(grid_size(u, r) == 401)[:8]
    assert len(pick) >= 4
    same_as_slow(u[:, pick], r[:, pick])


def test_chunks_and_threads_leave_the_bits_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 3 examples on 1 and 3 threads give the bits of one chunk and of the reference."""
    u, r = edge_columns(5, seed=9)
    u, r = np.concatenate([u, u[:, ::-1] * 0.5], axis=1), np.concatenate([r, r[:, ::-1] * 0.5], axis=1)
    whole = per_example_epsilon(u, r)
    threads = torch.get_num_threads()
    monkeypatch.setattr(epsilon, "_VALUES_PER_CHUNK", 3 * 5)
    try:
        for count in (1, 3):
            torch.set_num_threads(count)
            np.testing.assert_array_equal(per_example_epsilon(u, r), whole)
    finally:
        torch.set_num_threads(threads)
    same_as_slow(u, r)


@pytest.mark.parametrize("n", [3, 4, 7, 16, 100, 512, 1024])
def test_epsilon_table_is_monotone_where_the_bounds_need_it(n: int) -> None:
    """Kept rules (false positives >= 1, true positives <= n - 1): epsilon falls with false
    positives and rises with true positives, so a block's corner counts bound all its rules."""
    kept = _epsilon_table(n, DELTA).reshape(n + 1, n + 1)[1:, :n]
    assert (np.diff(kept, axis=0) <= 0).all() and (np.diff(kept, axis=1) >= 0).all()
    bound = _bound_table(n, DELTA).reshape(n + 1, n + 1)
    assert bound[0, n] == np.inf and bound[0, 0] == kept[0, 0] and bound[n, n] == kept[n - 1, n - 1]
    assert not _epsilon_table(n, DELTA).flags.writeable  # cached and shared: nobody may change it


def test_left_threshold_is_numpys_linspace_bit_for_bit() -> None:
    rng = np.random.default_rng(1)
    start = rng.normal(0, 50, 300)
    stop = start + 4.0 + rng.normal(0, 1e-12, 300)
    i = rng.integers(0, 400, 300)
    want = np.array([np.linspace(a, b, 400)[k] for a, b, k in zip(start, stop, i)])
    np.testing.assert_array_equal(intervals.left_threshold(start, stop, i), want)
