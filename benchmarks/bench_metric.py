"""Speed and memory of challenge.scoring.metric.per_example_epsilon against the published scorer.

Run: python benchmarks/bench_metric.py [--examples 1000]

Realistic confidences (normal with per-example locations and unlearning shifts, plus peaky,
tied and saturated examples) for N = 16, 64 and 512 models, each time the median of several
repetitions. The published scorer's seconds per example come from its own timings stored with
the fixtures; the fast path is also checked, example by example, against the slow reference
transcription kept in tests/test_metric.py. At N = 512, K = 1,000 it is also timed against the
previous implementation (challenge/scoring/epsilon.py at PREVIOUS, read from git) in the same run, so load on a shared
machine weighs on both alike, with the metric's threads (torch.get_num_threads()) and with one.
Then evaluate_forgetting with its 200-replicate interval (the two-way bootstrap, replicates
stacked as columns of one epsilon problem) against the former interval's loop (one full epsilon
computation per replicate, models only), at N = 16, K = 100 and N = 512, K = 1,000.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from challenge.scoring.epsilon import DELTA, _epsilons
from challenge.scoring.metric import (
    evaluate_forgetting,
    forget_score,
    per_example_epsilon,
)

ROOT = Path(__file__).resolve().parent.parent
REPEATS = 7  # timings are medians of this many calls
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


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def median_seconds(fn, *args, repeats: int = REPEATS) -> float:
    return timed(fn, *args, repeats=repeats)[0]


def timed(fn, *args, repeats: int = REPEATS) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds of this process (all its threads) per call."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn(*args)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000)
    args = parser.parse_args()
    k = args.examples
    slow = load(ROOT / "tests" / "test_metric.py", "test_metric").slow_epsilons
    print(f"per_example_epsilon, K = {k} examples, median of {REPEATS}, {torch.get_num_threads()} thread(s)")
    print(
        f"{'N':>5} {'seconds':>8} {'examples/s':>11} {'peak MB':>8} {'ref s/ex':>9} {'speed-up':>9}  check vs slow "
        "reference"
    )
    for n, n_checked in ((16, 20), (64, 5), (512, 1)):
        u, r = realistic(n, k, seed=n)
        eps = per_example_epsilon(u, r)  # also the warm-up (imports, first-touch pages, cached tables)
        seconds = median_seconds(per_example_epsilon, u, r)
        tracemalloc.start()
        per_example_epsilon(u, r)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        ref = reference_seconds_per_example(n)
        pick = np.linspace(0, k - 1, n_checked).astype(int)
        same = np.array_equal(slow(u[:, pick], r[:, pick]), eps[pick])
        print(
            f"{n:>5} {seconds:>8.3f} {k / seconds:>11.0f} {peak:>8.1f} {ref:>9.3f} {ref * k / seconds:>9.0f}x  "
            f"{'identical' if same else 'DIFFERENT'} on {n_checked} examples"
        )
    bench_previous(k)
    bench_interval()


PREVIOUS = "5010a57"  # the last landed commit before issue 29's bounded search of the interval rules


def previous_epsilon():  # noqa: ANN201 - the module's function
    """The per-example epsilon as the kit computed it at PREVIOUS, from the checkout's history (no copy kept);
    None where there is none (a shallow clone, an unpacked archive)."""
    import subprocess
    import tempfile

    r = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{PREVIOUS}:challenge/scoring/epsilon.py"], capture_output=True, text=True
    )
    if r.returncode != 0:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "epsilon_previous.py"
        path.write_text(r.stdout)
        return load(path, "epsilon_previous").per_example_epsilon


def bench_previous(k: int, n: int = 512) -> None:
    """This implementation against the previous one, interleaved in one run on the same input."""
    previous = previous_epsilon()
    if previous is None:
        print(f"\nthe previous implementation needs the git history (commit {PREVIOUS}): not timed")
        return
    u, r = realistic(n, k, seed=n)
    same = np.array_equal(previous(u, r), per_example_epsilon(u, r))
    threads = torch.get_num_threads()

    def one_thread(u: np.ndarray, r: np.ndarray) -> np.ndarray:
        torch.set_num_threads(1)
        try:
            return per_example_epsilon(u, r)
        finally:
            torch.set_num_threads(threads)

    # interleaved, one call of each per round, so that a change of load weighs on all three alike
    rounds = [
        [timed(fn, u, r, repeats=1) for fn in (previous, per_example_epsilon, one_thread)] for _ in range(REPEATS)
    ]
    before, now, one = (tuple(statistics.median(x[i][m] for x in rounds) for m in (0, 1)) for i in range(3))
    print(f"\nN = {n}, K = {k}: previous implementation against this one, same run, interleaved, median of {REPEATS}")
    print(f"  {'':18} {'wall s':>7} {'speed-up':>8} {'CPU s':>7}  (load average {os.getloadavg()[0]:.1f})")
    print(f"  {'previous':18} {before[0]:7.3f} {'':>8} {before[1]:7.3f}")
    for name, (wall, cpu) in ((f"now, {threads} thread(s)", now), ("now, 1 thread", one)):
        print(f"  {name:18} {wall:7.3f} {before[0] / wall:7.1f}x {cpu:7.3f}")
    print(f"  epsilons {'identical' if same else 'DIFFERENT'} on all {k} examples")


def former_interval_loop(u: np.ndarray, r: np.ndarray, n_bootstrap: int, seed: int = 0) -> np.ndarray:
    """The models-only replicates as the scorer drew them before the two-way bootstrap: one call each."""
    rng, n = np.random.default_rng(seed), u.shape[0]
    return np.array(
        [
            forget_score(_epsilons(u[rng.integers(0, n, n)], r[rng.integers(0, n, n)], DELTA, "grid"), n)
            for _ in range(n_bootstrap)
        ]
    )


def timed_forgetting(u: np.ndarray, r: np.ndarray, n_bootstrap: int, groups: np.ndarray | None = None):  # noqa: ANN201
    """evaluate_forgetting with its interval (accuracies all alike: only F and its interval cost), and its seconds;
    with `groups`, F per group from the same pass too (as the scorer asks for the strata)."""
    acc = [0.9] * len(u)
    start = time.perf_counter()
    res = evaluate_forgetting(
        u,
        r,
        retain_acc_unlearned=acc,
        retain_acc_retrained=acc,
        test_acc_unlearned=acc,
        test_acc_retrained=acc,
        n_bootstrap=n_bootstrap,
        groups=groups,
    )
    return res, time.perf_counter() - start


def bench_interval(n_bootstrap: int = 200) -> None:
    print(f"\nevaluate_forgetting with n_bootstrap = {n_bootstrap}")
    print(f"{'N':>5} {'K':>5} {'seconds':>8} {'former s':>9} {'speed-up':>9}  interval (two-way)")
    for n, k in ((16, 100), (512, 1000)):
        u, r = realistic(n, k, seed=n)
        res, seconds = timed_forgetting(u, r, n_bootstrap)
        start = time.perf_counter()
        former_interval_loop(u, r, n_bootstrap)
        former = time.perf_counter() - start
        lo, hi = res.forget_quality_ci
        print(
            f"{n:>5} {k:>5} {seconds:>8.2f} {former:>9.2f} {former / seconds:>8.1f}x  F {res.forget_quality:.4f} "
            f"[{lo:.4f}, {hi:.4f}]"
        )


def bench_attacks(n_bootstrap: int = 200) -> None:
    """The per-example attacks (challenge.scoring.attacks) beside F: each one's point estimate, then all three
    with their two-way bootstrap; and F per memorisation stratum, from one more pass of F's bootstrap (a
    metric computed without the groups) and from F's own pass (the scorer's way: F with the groups, less F)."""
    from challenge.scoring.attacks import ATTACKS, STATISTICS, attacks, memorisation_groups, strata

    print(f"\nattacks beside F, n_bootstrap = {n_bootstrap} (seconds)")
    print(
        f"{'N':>5} {'K':>5} {'F + CI':>8} {'ulira':>7} {'klom':>7} {'auc':>7} {'all+CI':>8} {'strata':>8} "
        f"{'shared':>8}  vs F + CI"
    )
    for n, k in ((16, 500), (512, 1000)):
        u, r = realistic(n, k, seed=n)
        original = r.mean(axis=0) + np.linspace(-1, 1, k)
        res, f_seconds = timed_forgetting(u, r, n_bootstrap)
        each = []
        for name in ATTACKS:
            start = time.perf_counter()
            STATISTICS[name](u, r)
            each.append(time.perf_counter() - start)
        start = time.perf_counter()
        attacks(u, r, ATTACKS, res)
        together = time.perf_counter() - start
        start = time.perf_counter()
        alone = strata(u, r, original, res)
        split = time.perf_counter() - start
        with_groups, grouped_seconds = timed_forgetting(u, r, n_bootstrap, memorisation_groups(original, r))
        start = time.perf_counter()
        assert strata(u, r, original, with_groups) == alone  # the same intervals, bit for bit
        shared = grouped_seconds - f_seconds + time.perf_counter() - start
        cells = " ".join(f"{t:>7.3f}" for t in each)
        print(
            f"{n:>5} {k:>5} {f_seconds:>8.2f} {cells} {together:>8.2f} {split:>8.2f} {shared:>8.2f}  "
            f"attacks {together / f_seconds:.2f}x, strata {split / f_seconds:.2f}x, from F's pass "
            f"{shared / f_seconds:+.2f}x"
        )


if __name__ == "__main__":
    main()
    bench_attacks()
