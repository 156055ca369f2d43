"""Overhead of the sandbox per run (child start, weight transfer, evaluation) vs the unlearning itself.

Scores submissions/template.py (one epoch of fine-tuning) from scratch with N runs, default 16 on
the default preset, and splits the wall time: what the child pays once (interpreter start inside
the sandbox, imports, inputs), what each run pays around the submission (fresh weights, saving its
state dict, the scorer's strict load and forget/retain/test inference once the child has ended), and the
submission's own seconds (each run is a process of its own: its fork, import and exit are per-run costs); besides, what
the scorer evaluated on a spare core while the child ran (challenge.scoring.alongside), which the scoring does not wait
for. Uses the preset's pool when it has N models (`challenge pool pool.size=16`); otherwise, or with --synthetic-pool,
untrained stand-ins written in a temporary cache: timing does not depend on how the pool was trained (its scores are
then meaningless, and the budget is not enforced). The budget's calibration (pricing a retrain in the child before the
file is imported) is shown as a once-per-child cost, with the price it found.

    python benchmarks/bench_sandbox.py [--synthetic-pool] [hydra overrides, e.g. scorer.isolation=none]
    python benchmarks/bench_sandbox.py --startup   # the sandbox's own start-up, without and with the resource caps
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from challenge.cli import CONF_DIR
from challenge.pool import Pool, write_stand_in
from challenge.scoring.scorer import score_submission

TEMPLATE = Path(__file__).resolve().parent.parent / "submissions" / "template.py"


def startup(repeats: int = 20) -> None:
    """Median wall time of a sandboxed `true` and `python -S -c pass`, without the caps (no process cap, no tmpfs
    sizes, no uid of its own) and with them, interleaved so that the machine's load falls on both alike; and
    the polled caps' cost per check (every 0.5 s of a run)."""
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as folder:
        _startup(Path(folder), repeats)


def _startup(root: Path, repeats: int) -> None:
    import statistics
    import time

    from challenge.scoring.processes import ProcessTree
    from challenge.scoring.sandbox import Sandbox
    from challenge.scoring.sandbox.caps import Caps as _Caps
    from challenge.scoring.settings import Settings

    dirs = [root / d for d in ("inputs", "outputs", "scratch")]
    for d in dirs:
        d.mkdir()
    plain = Sandbox(*dirs, Settings.default_limits(max_processes=None, scratch_mb=None))
    plain.own_uid = False
    capped = Sandbox(*dirs, Settings.default_limits())
    times: dict[str, list[float]] = {}
    for _ in range(repeats):
        for box_name, box in (("without caps", plain), ("with caps", capped)):
            for cmd_name, argv in (
                ("true", ["/bin/true"]),
                ("python -S -c pass", [sys.executable, "-S", "-c", "pass"]),
            ):
                t = time.perf_counter()
                box.run(argv, root / "out.log", root / "err.log", lambda tree: None, poll=0.005)
                times.setdefault(f"{cmd_name}, {box_name}", []).append(time.perf_counter() - t)
    print(
        f"sandbox start-up ({capped.protections.isolation}; identity: {capped.protections.identity.split(',')[0]}), "
        f"median of {repeats}:"
    )
    for name, ts in times.items():
        print(f"  {name:<36}{statistics.median(ts) * 1000:8.1f} ms")
    caps, tree = _Caps(capped, None), ProcessTree(os.getpid())
    t = time.perf_counter()
    for _ in range(200):
        caps.checked = -float("inf")
        caps.check(tree, None)
    print(f"  polled caps, per check (every 0.5 s)  {(time.perf_counter() - t) / 200 * 1000:8.2f} ms")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="Other arguments are Hydra overrides of the score config."
    )
    parser.add_argument(
        "--synthetic-pool", action="store_true", help="time against untrained stand-ins even where a pool exists"
    )
    parser.add_argument(
        "--startup", action="store_true", help="only the sandbox's own start-up, without and with the resource caps"
    )
    args, overrides = parser.parse_known_args(argv)
    if args.startup:
        return startup()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("score", ["logger=none", "scorer.n_runs=16", "scorer.fresh=true", *overrides])
    synthetic = args.synthetic_pool or not has_pool(cfg)
    if synthetic:
        print("timing against an untrained stand-in pool (no pool of this preset with scorer.n_runs models)")
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as folder:
        score_and_report(cfg, Path(folder), synthetic)


def score_and_report(cfg: DictConfig, out: Path, synthetic: bool) -> None:
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        if synthetic:
            cfg.paths.cache_dir = str(out / "cache")  # never beside real pools: it has their fingerprint
            cfg.scorer.budget_seconds = cfg.scorer.budget_seconds or 600.0
    if synthetic:
        write_stand_in(cfg, int(cfg.scorer.n_runs), seconds=1.0, accuracies={"retain": 0.5, "forget": 0.5, "test": 0.5})
    result = score_submission(cfg, TEMPLATE, out)
    if result["status"] != "scored":
        sys.exit(f"the template was rejected ({result['status']}): {result['message']}")
    print(report(result))


def has_pool(cfg: DictConfig) -> bool:
    dm = instantiate(cfg.data)
    dm.setup()
    pool = Pool.for_config(cfg, dm)
    return pool.original_path.exists() and len(pool.entries(int(cfg.scorer.n_runs))) == int(cfg.scorer.n_runs)


def report(r: dict) -> str:
    t, n = r["timing"], r["settings"]["n_runs"]
    child = t["child"]
    unlearning = float(np.sum(t["run_unlearning_seconds"]))
    around = (
        float(np.sum(t["run_seconds"]))
        - unlearning
        - float(np.sum(t["run_import_seconds"]))
        - float(np.sum(t["run_save_seconds"]))
    )
    rows = [
        ("once: stage inputs (scorer)", child["stage_inputs"]),
        ("once: interpreter start in the sandbox", child["interpreter_start"]),
        ("once: load inputs (torch, kit imports, weights, data, warm-up)", child["load_inputs"]),
        ("once: price a retrain (calibration steps, own process)", child.get("calibrate", 0.0)),
        ("per run: import the file, seed, loaders (run's process)", float(np.sum(t["run_import_seconds"]))),
        ("per run: state dict out (run's process)", float(np.sum(t["run_save_seconds"]))),
        ("per run: fork, leftover check, exit, hand-over", around),
        ("per run: strict load + inference after the child (scorer)", t["evaluation_seconds"]),
    ]
    overhead = sum(v for _, v in rows)
    beside = t.get("evaluation_alongside", {"runs": 0, "seconds": 0.0})
    lines = [
        f"sandbox overhead: {n} runs of {TEMPLATE.name}, pool {r['pool']['fingerprint']}, isolation "
        f"{r['sandbox']['isolation']}",
        f"{'':<60}{'total s':>9}{'per run s':>11}{'% of unlearning':>17}",
    ]
    for name, v in [
        *rows,
        ("overhead, all of the above", overhead),
        ("unlearning (the submission's own time)", unlearning),
        (f"beside the runs: {beside['runs']} evaluation(s) on a spare core", beside["seconds"]),
    ]:
        lines.append(f"{name:<60}{v:>9.2f}{v / n:>11.3f}{100 * v / unlearning:>16.1f}%")
    lines.append(
        f"the scorer's own work per run, waited for: {t['evaluation_seconds'] / n:.3f} s = "
        f"{100 * t['evaluation_seconds'] / unlearning:.1f}% of the "
        f"template's {unlearning / n:.3f} s (target <= 10%; {beside['runs']} of {n} runs were evaluated beside the "
        "child, "
        f"{beside['seconds'] / max(beside['runs'], 1):.3f} s each, challenge.scoring.alongside)"
    )
    b = r["budget"]
    cost = float(np.mean(b["run_cost"]))
    lines.append(f"child wall time {t['child_seconds']:.1f} s; scorer total {t['total_seconds']:.1f} s")
    lines.append(
        f"budget per run {b['per_run']:.2f} {b['clock']} s ({b['rule']}); the template's runs cost {cost:.2f} s, "
        f"{np.mean(b['run_fraction']):.0%} of it"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
