"""How the mean ranking's stability grows with the splits, the models per side (N) and the forget examples (K).

    python benchmarks/stability_by_size.py outputs/baseline/multiruns/<time>   # a sweep over several split seeds

From a finished `challenge baseline -m data.split.seed=0,1,2,3,4,5` sweep, with no new training or scoring:
each method's F is computed again from its kept confidences (forget_confidences.npz) on N of the 16 models per
side and K of the forget examples, and its final score scaled as F is (its accuracy ratios are the same
models'). For every way to cut the splits into two disjoint groups of g, the methods' mean final scores in one
group are ranked against the other's (Kendall's τ-b), over all methods and over the top five; the means over
the cuts are printed, and averaged over 4 random subsets where N or K is below the full size. The number of
originals (S) needs a sweep of its own (`pool.originals=3`): run this on both sweeps and compare.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np

from challenge.reports.stability import job_folders, kendall_tau
from challenge.scoring.epsilon import per_example_epsilon
from challenge.scoring.metric import forget_score

TOP = 5
DRAWS = 4


def load(sweep: Path) -> tuple[list[str], dict[tuple[int, str], tuple]]:
    """Per (split, method): unlearned and retrained confidences, final score and F."""
    folders = job_folders(sweep)
    methods = sorted(p.name for p in folders[0].iterdir() if (p / "forget_confidences.npz").is_file())
    data = {}
    for j, folder in enumerate(folders):
        for m in methods:
            score = json.loads((folder / m / "result.json").read_text())["score"]
            kept = np.load(folder / m / "forget_confidences.npz")
            data[j, m] = (kept["unlearned"], kept["retrained"], score["final_score"], score["forget_quality"])
    return methods, data


def finals(methods: list[str], data: dict, n_splits: int, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """methods × splits: each final score with F from n models per side and k examples (one random subset)."""
    out = np.zeros((len(methods), n_splits))
    for j in range(n_splits):
        unlearned0 = data[j, methods[0]][0]
        cols = np.sort(rng.permutation(unlearned0.shape[1])[:k])
        ours, theirs = rng.permutation(unlearned0.shape[0])[:n], rng.permutation(unlearned0.shape[0])[:n]
        for i, m in enumerate(methods):
            unlearned, retrained, final, f = data[j, m]
            f_sub = forget_score(per_example_epsilon(unlearned[np.ix_(ours, cols)], retrained[np.ix_(theirs, cols)]), n)
            out[i, j] = final * f_sub / f if f > 0 else 0.0
    return out


def mean_tau(scores: np.ndarray, g: int, top: int | None = None) -> float:
    """τ-b between the mean scores of two disjoint groups of g splits, over every such cut."""
    n_splits, taus = scores.shape[1], []
    for a in itertools.combinations(range(n_splits), g):
        for b in itertools.combinations([s for s in range(n_splits) if s not in a], g):
            if a > b:
                continue
            x, y = scores[:, list(a)].mean(1), scores[:, list(b)].mean(1)
            keep = np.argsort(-(x + y))[:top] if top else np.arange(len(x))
            tau = kendall_tau(list(x[keep]), list(y[keep]))
            if tau is not None:
                taus.append(tau)
    return float(np.mean(taus))


def main(argv: list[str]) -> None:
    sweep = Path(argv[0])
    methods, data = load(sweep)
    n_splits = 1 + max(j for j, _ in data)
    full_n, full_k = data[0, methods[0]][0].shape
    groups = range(1, n_splits // 2 + 1)
    print(f"{sweep}: {n_splits} splits, {len(methods)} methods, N = {full_n}, K = {full_k}")
    print("τ between disjoint groups of g splits (all methods / top 5), mean over every cut")
    print(f"{'N':>3} {'K':>5}  " + "  ".join(f"{f'g={g}':>11}" for g in groups))
    for n in sorted({max(3, full_n // 4), full_n // 2, full_n}):
        for k in sorted({full_k // 4, full_k // 2, full_k}):
            draws = 1 if (n, k) == (full_n, full_k) else DRAWS
            rows = []
            for d in range(draws):
                scores = finals(methods, data, n_splits, n, k, np.random.default_rng(d))
                rows.append([(mean_tau(scores, g), mean_tau(scores, g, TOP)) for g in groups])
            mean = np.mean(rows, axis=0)
            print(f"{n:>3} {k:>5}  " + "  ".join(f"{a:>5.2f} / {t:.2f}" for a, t in mean))


if __name__ == "__main__":
    main(sys.argv[1:])
