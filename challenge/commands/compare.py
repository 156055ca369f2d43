"""`challenge compare A/result.json B/result.json`: is A's forget quality really above B's?

Reads the two results and the per-model confidences kept beside them, and prints both F with
their intervals, the paired difference with its interval, and P(F_A > F_B)
(challenge.scoring.compare). Anything that makes the comparison meaningless (a missing file, an
unscored result, no kept confidences, two pools) is a ChallengeError: one line, exit status 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

if TYPE_CHECKING:
    from challenge.scoring.result import Score


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", type=Path, help="result.json of method A (as `challenge score` wrote it)")
    p.add_argument("b", type=Path, help="result.json of method B, scored on the same pool")
    p.add_argument(
        "--bootstrap",
        type=_positive,
        default=None,
        metavar="B",
        help="paired bootstrap replicates (default: as many as the results were scored with, whose kept replicates "
        "make it instant)",
    )
    p.add_argument("--seed", type=int, default=None, help="the bootstrap's seed (default: the results' own)")


def _as_scored(a: Score, b: Score) -> tuple[int, int]:
    """The replicate count and seed both results were scored with (1000 and 0 where they differ or had none)."""
    n_bootstrap = a.n_bootstrap if a.n_bootstrap and a.n_bootstrap == b.n_bootstrap else 1000
    return n_bootstrap, a.seed if a.seed == b.seed else 0


def run(cfg: DictConfig, args: argparse.Namespace) -> dict[str, Any]:
    from challenge.scoring.compare import compare_kept, load_scored

    paths = [p.expanduser().resolve() for p in (args.a, args.b)]
    (ra, ka), (rb, kb) = (load_scored(p) for p in paths)
    sa, sb = ra.score, rb.score  # load_scored takes scored results only
    n_bootstrap, seed = _as_scored(sa, sb)
    c = compare_kept(ka, kb, args.bootstrap or n_bootstrap, seed if args.seed is None else args.seed)
    names = [Path(r.submission.path).stem for r in (ra, rb)]
    print(format_comparison(names, [sa, sb], c, ka.unlearned.shape, ka.pool_fingerprint))
    return {
        "a": names[0],
        "b": names[1],
        "difference": c.difference,
        "difference_ci": list(c.difference_ci),
        "p_a_above": c.p_a_above,
    }


def format_comparison(names: list[str], scores: list[Score], c: Any, shape: tuple[int, int], pool: str) -> str:
    """Both F with the scorer's intervals, then the paired difference and the plain verdict."""
    a, b = names if names[0] != names[1] else ("A", "B")
    width = max(len(a), len(b))
    lines = [
        f"paired comparison on pool {pool}: N = {shape[0]} models, K = {shape[1]} forget examples, {c.n_bootstrap} "
        "replicates"
    ]
    for name, s in zip((a, b), scores):
        ci = s.forget_quality_ci
        interval = f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else " (no interval: scored with n_bootstrap=0)"
        lines.append(f"  F {name:<{width}}  {s.forget_quality:.4f}{interval}")
    lo, hi = c.difference_ci
    level = f"{c.ci_level:.0%}"
    lines.append(f"  F {a} - F {b}  {c.difference:+.4f} [{lo:+.4f}, {hi:+.4f}] ({level} paired interval)")
    lines.append(f"  P(F {a} > F {b}) = {c.p_a_above:.3f}")
    if c.separated:
        better, worse = (a, b) if c.difference > 0 else (b, a)
        lines.append(
            f"separated at {level}: {better} forgets better than {worse} (the interval of the difference excludes 0)"
        )
    else:
        lines.append(
            f"not separated at {level}: the interval of the difference contains 0, so this evaluation does not tell "
            f"{a} and {b} apart"
        )
    return "\n".join(lines)
