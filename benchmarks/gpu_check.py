"""The GPU check (run by benchmarks/gpu_check.sh): a ResNet-18 pool, the template and hostile files scored on the GPU.

On a machine with a GPU: a pool of 4 ResNet-18 models (trained as one pack, pool.pack=4), the packed training
speed of ResNet-18 at 32x32 for pool.pack = 1, 8, 32 (and 32 in bf16-mixed) with the hours the full 2023 pool
(512 models x 30 epochs x 30,000 images) would take at the best of them, the template scored at N = 4 through
the sandbox on that GPU, the hostile network and snoop files still rejected there, and a file that looks for
other runs' files and globals still scored (each run is a process forked from a parent that never touched
CUDA, so each run creates its own CUDA context); it prints the img/s of training in the sandbox, of the runs
and of the scorer's evaluation, what a fresh run costs besides unlearning() (the fork, the import, the CUDA
context, saving the weights), and the sandbox's device line. Without a GPU it says so plainly and runs the
same on the CPU with a smaller data set. Exit status 0 only if every check holds. Everything goes into a fresh
cache of its own.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUBMISSIONS = REPO / "tests" / "submissions"
# (file, expected status, words of the message)
CHECKS = [
    (REPO / "submissions" / "template.py", "scored", "final score"),
    (SUBMISSIONS / "network.py", "raised", "Network is unreachable"),
    (SUBMISSIONS / "snoop.py", "raised", "snooped: found nothing"),
    (SUBMISSIONS / "looks_for_other_runs.py", "scored", "final score"),
]


def overrides(cuda: bool) -> list[str]:
    """ResNet-18 at 32 px; 5 epochs of retraining, so that the template's one epoch fits a budget of half a retrain."""
    data = ["data.source.n_identities=200", "data.source.images_per_identity=12"] if cuda else []
    return [
        "experiment=tiny",
        "logger=none",
        "model=resnet18",
        "pool.size=4",
        "pool.pack=4",  # the pool's packed path (challenge.training.packed) on the device
        "trainer.max_epochs=5",
        "trainer.enable_progress_bar=false",
        *data,
    ]


def scorer_overrides(cuda: bool, isolation: str) -> list[str]:
    return [
        f"device={'cuda' if cuda else 'cpu'}",
        f"scorer.isolation={isolation}",
        "scorer.budget_fraction=0.5",
        "scorer.n_bootstrap=20",
    ]


def compose(name: str, args: list[str], out: Path):  # noqa: ANN201 - a DictConfig
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from challenge.cli import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(name, overrides=args)
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.paths.log_dir = str(out)
    return cfg


def img_per_s(result: dict, sizes: dict[str, int]) -> dict[str, float]:
    """Training in the sandbox (the calibration's timed steps), the runs' unlearning() calls, the scorer's
    evaluation."""
    cal, timing, s = result["budget"]["calibration"], result["timing"], result["settings"]
    runs = timing["run_unlearning_seconds"]
    return {
        "training in the sandbox (the budget's calibration)": s["batch_size"] / cal["per_step_seconds"],
        "the template's runs (one epoch of retain each, unlearning() alone)": sizes["retain"] / (sum(runs) / len(runs)),
        "the scorer's evaluation (forget, retain, test)": (sizes["forget"] + sizes["retain"] + sizes["test"])
        * s["n_runs"]
        / evaluation_seconds(timing),
    }


def evaluation_seconds(timing: dict) -> float:
    """The judge's evaluating, after the child and (on a CPU with a core to spare) beside it."""
    return timing["evaluation_seconds"] + timing.get("evaluation_alongside", {}).get("seconds", 0.0)


def data_sizes(cfg) -> dict[str, int]:  # noqa: ANN001 - a DictConfig
    from hydra.utils import instantiate

    dm = instantiate(cfg.data)
    dm.setup()
    return {part: len(dm.dataset(part)) for part in ("retain", "forget", "test")}


def packed_speed(args: list[str], cuda: bool, out: Path) -> None:
    """Packed ResNet-18 training at 32x32: img/s per pack size against the matmul peak, and the 2023 pool's hours."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from packing import matmul_peak, projection_hours

    from challenge.training.recipe import quiet_lightning

    quiet_lightning()
    device = "cuda" if cuda else "cpu"
    runs = (
        [(1, "32-true"), (8, "32-true"), (32, "32-true"), (32, "bf16-mixed")]
        if cuda
        else [(1, "32-true"), (8, "32-true")]
    )
    peak, best = matmul_peak(device), 0.0
    _pack_speed(args, 1, "32-true", device, out)  # a warm-up (the CUDA context, the kernels' first calls)
    for m, precision in runs:
        r = _pack_speed(args, m, precision, device, out)
        best = max(best, r["img_s"])
        print(
            f"     packed ResNet-18, pool.pack={m:<2} {precision:<10} {r['img_s']:9.0f} img/s, "
            f"{r['img_s'] * r['flops_per_image'] / peak:6.1%} of the float32 matmul peak ({peak / 1e12:.1f} TFLOP/s), "
            f"{r['memory_bytes'] / 2**30:.2f} GiB {'GPU peak' if cuda else 'process peak RSS'}",
            flush=True,
        )
    print(
        f"     the full 2023 pool (512 models x 30 epochs x 30,000 images) at {best:.0f} img/s: "
        f"{projection_hours(best):.1f} hours on this {'GPU' if cuda else 'CPU'}",
        flush=True,
    )


def _pack_speed(args: list[str], m: int, precision: str, device: str, out: Path) -> dict:
    from hydra.utils import instantiate
    from packing import flops_per_image, measure

    cfg = compose("pool", [*args, "trainer.max_epochs=1", f"trainer.precision={precision}"], out)
    dm = instantiate(cfg.data)
    dm.setup()
    return measure(cfg, dm, m, device) | {"flops_per_image": flops_per_image(cfg, dm)}


def main() -> int:
    import torch

    from challenge.commands.pool import run as build_pool
    from challenge.reports.tracking import register_resolvers
    from challenge.scoring.sandbox.probe import bwrap_problem
    from challenge.scoring.scorer import score_submission

    start = time.perf_counter()
    cuda = torch.cuda.is_available()
    if cuda:
        print(
            f"GPU found: {torch.cuda.get_device_name(0)} "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}, torch {torch.__version__})"
        )
    else:
        print(
            f"no GPU found (torch {torch.__version__} sees no CUDA device): running the CPU variant on a smaller data "
            "set"
        )
    problem = bwrap_problem()
    isolation = "bwrap" if problem is None else "auto"
    print(f"bubblewrap: {'usable' if problem is None else problem}; scorer.isolation={isolation}", flush=True)
    register_resolvers()
    root = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    os.environ["CHALLENGE_CACHE_DIR"] = str(root / "cache")
    args = overrides(cuda)
    t = time.perf_counter()
    pool_cfg = compose("pool", args, root / "pool")
    build_pool(pool_cfg)
    sizes = data_sizes(pool_cfg)
    print(
        f"pool of 4 ResNet-18 models (one pack, and the original) built in {time.perf_counter() - t:.1f} s", flush=True
    )
    packed_speed(args, cuda, root / "speed")
    failed = 0
    for path, status, words in CHECKS:
        t = time.perf_counter()
        result = score_submission(
            compose("score", [*args, *scorer_overrides(cuda, isolation)], root / path.stem), path, root / path.stem
        )
        ok = result["status"] == status and words in result["message"]
        failed += not ok
        print(
            f"{'ok  ' if ok else 'FAIL'} {path.name}: {result['status']} in {time.perf_counter() - t:.1f} s: "
            f"{result['message']}"
        )
        if path.stem == "template":
            print(f"     sandbox: {result['sandbox']['isolation']}; network {result['sandbox']['network']}")
            print(f"     device:  {result['sandbox']['device']}")
            if result["status"] == "scored":
                for what, rate in img_per_s(result, sizes).items():
                    print(f"     {rate:10.0f} img/s  {what}")
                t = result["timing"]
                fresh = [whole - own for whole, own in zip(t["run_seconds"], t["run_unlearning_seconds"])]
                print(
                    f"     a fresh run's own process besides unlearning(): {1000 * sum(fresh) / len(fresh):.0f} ms "
                    "wall "
                    f"(import and the CUDA context {1000 * sum(t['run_import_seconds']) / len(fresh):.0f} ms, weights "
                    "out "
                    f"{1000 * sum(t['run_save_seconds']) / len(fresh):.0f} ms)"
                )
                print(f"     budget: {result['budget']['rule']} (clock: {result['budget']['clock']})")
            expected = "cuda: GPU" if cuda else "cpu: "
            if not result["sandbox"]["device"].startswith(expected):
                failed += 1
                print(f"FAIL the sandbox's device line does not start with {expected!r}")
        sys.stdout.flush()
    print(
        f"{'all checks passed' if not failed else f'{failed} check(s) failed'} in {time.perf_counter() - start:.1f} s "
        f"({'GPU' if cuda else 'CPU only'}); files in {root}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
