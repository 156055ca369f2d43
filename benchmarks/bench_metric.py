"""Speed and memory of challenge.scoring.metric.per_example_epsilon against the published scorer.

Run: python benchmarks/bench_metric.py [--examples 1000]

Realistic confidences (normal with per-example locations and unlearning shifts, plus peaky,
tied and saturated examples) for N = 16, 64 and 512 models. The published scorer's seconds per
example come from its own timings stored with the fixtures; the fast path is also checked,
example by example, against the slow reference transcription kept in tests/test_metric.py.
Then evaluate_forgetting with its 200-replicate interval (the two-way bootstrap, replicates
stacked as columns of one epsilon problem) against the former interval's loop (one full epsilon
computation per replicate, models only), at N = 16, K = 100 and N = 512, K = 1,000.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
import tracemalloc
from pathlib import Path

import numpy as np

from challenge.scoring.epsilon import DELTA, _epsilons
from challenge.scoring.metric import (
    evaluate_forgetting,
    forget_score,
    per_example_epsilon,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = np.load(ROOT / "tests" / "fixtures" / "epsilon_public.npz")
SATURATION = 103.61632918473206  # -log(1e-45): where logit-scaled confidences stop


def realistic(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """[n, k] unlearned and retrained confidences: 80% normal, 10% peaky, 5% tied, 5% saturated."""
    rng = np.random.default_rng(seed)
    loc, spread = rng.normal(2, 3, k), rng.uniform(0.5, 2.5, k)
    u_spread = spread * rng.uniform(0.7, 1.4, k)
    kind = rng.choice(4, size=k, p=[0.8, 0.1, 0.05, 0.05])
    u_spread[kind == 1] *= 0.005  # a collapsed (peaky) unlearned distribution
    loc[kind == 3] = rng.choice([-1, 1], np.count_nonzero(kind == 3)) * 101.0
    r = rng.normal(loc, spread, (n, k))
    u = rng.normal(loc + rng.normal(0, 0.5, k) * spread, u_spread, (n, k))
    tied = kind == 2
    u[:, tied], r[:, tied] = np.round(u[:, tied], 1), np.round(r[:, tied], 1)
    return np.clip(u, -SATURATION, SATURATION), np.clip(r, -SATURATION, SATURATION)


def reference_seconds_per_example(n: int) -> float:
    """The published scorer's own timing (2-core CPU) for the fixture cases with n models."""
    cases = [i for i in range(7) if FIXTURES[f"c{i}_unlearned"].shape[0] == n]
    return float(np.mean([FIXTURES[f"c{i}_ref_seconds"] / FIXTURES[f"c{i}_epsilons"].size for i in cases]))


def slow_reference():
    spec = importlib.util.spec_from_file_location("test_metric", ROOT / "tests" / "test_metric.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.slow_epsilons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000)
    args = parser.parse_args()
    k = args.examples
    slow = slow_reference()
    print(f"per_example_epsilon, K = {k} examples")
    print(f"{'N':>5} {'seconds':>8} {'examples/s':>11} {'peak MB':>8} {'ref s/ex':>9} {'speed-up':>9}  check vs slow reference")
    for n, n_checked in ((16, 20), (64, 5), (512, 1)):
        u, r = realistic(n, k, seed=n)
        per_example_epsilon(u[:, :50], r[:, :50])  # warm-up (imports, first-touch pages)
        start = time.perf_counter()
        eps = per_example_epsilon(u, r)
        seconds = time.perf_counter() - start
        tracemalloc.start()
        per_example_epsilon(u, r)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        ref = reference_seconds_per_example(n)
        pick = np.linspace(0, k - 1, n_checked).astype(int)
        same = np.array_equal(slow(u[:, pick], r[:, pick]), eps[pick])
        print(f"{n:>5} {seconds:>8.3f} {k / seconds:>11.0f} {peak:>8.1f} {ref:>9.3f} {ref * k / seconds:>9.0f}x  "
              f"{'identical' if same else 'DIFFERENT'} on {n_checked} examples")
    bench_interval()


def former_interval_loop(u: np.ndarray, r: np.ndarray, n_bootstrap: int, seed: int = 0) -> np.ndarray:
    """The models-only replicates as the scorer drew them before the two-way bootstrap: one call each."""
    rng, n = np.random.default_rng(seed), u.shape[0]
    return np.array([forget_score(_epsilons(u[rng.integers(0, n, n)], r[rng.integers(0, n, n)], DELTA, "grid"), n) for _ in range(n_bootstrap)])


def bench_interval(n_bootstrap: int = 200) -> None:
    print(f"\nevaluate_forgetting with n_bootstrap = {n_bootstrap}")
    print(f"{'N':>5} {'K':>5} {'seconds':>8} {'former s':>9} {'speed-up':>9}  interval (two-way)")
    for n, k in ((16, 100), (512, 1000)):
        u, r = realistic(n, k, seed=n)
        acc = [0.9] * n
        start = time.perf_counter()
        res = evaluate_forgetting(u, r, retain_acc_unlearned=acc, retain_acc_retrained=acc, test_acc_unlearned=acc, test_acc_retrained=acc, n_bootstrap=n_bootstrap)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        former_interval_loop(u, r, n_bootstrap)
        former = time.perf_counter() - start
        lo, hi = res.forget_quality_ci
        print(f"{n:>5} {k:>5} {seconds:>8.2f} {former:>9.2f} {former / seconds:>8.1f}x  F {res.forget_quality:.4f} [{lo:.4f}, {hi:.4f}]")


if __name__ == "__main__":
    main()
