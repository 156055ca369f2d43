"""Training speed: Lightning (the kit's `fit`) against a plain PyTorch loop of the same recipe, and packed.

Prints images/s and achieved GFLOP/s per model for the default preset and ResNet-18 at 32x32,
and Lightning's overhead (target: within 10%). Both loops train the same model from the same
seed on the same retain set with the same optimizer, schedule, batch size and epochs.

Then the pool's packed training (`pool.pack`, challenge.training.packed) of the default preset for
M = 1, 2, 4, 8, 16 side by side, one thread: img/s of the pack (per core), its fraction of the peak
of a large matmul timed in the same run, and peak memory (each M in a fresh process), with the
machine's load average before and after (other processes on the cores move every figure).
`python benchmarks/bench_training.py packs` prints that table alone.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import time

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict
from torch.utils.flop_counter import FlopCounterMode

from challenge.cli import CONF_DIR
from challenge.training.recipe import fit, quiet_lightning, set_threads

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from packing import flops_per_image as step_flops  # noqa: E402 - a sibling module of the benchmarks
from packing import matmul_peak, max_rss, measure  # noqa: E402

EPOCHS = int(os.environ.get("BENCH_EPOCHS", "3"))
PRESETS = {"default (test_resnet)": [], "resnet18": ["model=resnet18"]}
PACKS = (1, 2, 4, 8, 16)
PACK_EPOCHS = int(os.environ.get("BENCH_PACK_EPOCHS", "1"))
PACK_ROUNDS = int(os.environ.get("BENCH_PACK_ROUNDS", "3"))


def config(overrides: list[str], cache: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "pool",
            overrides=["logger=none", f"trainer.max_epochs={EPOCHS}", "trainer.enable_progress_bar=false", *overrides],
        )
    with open_dict(cfg):
        cfg.paths.cache_dir = cache
        cfg.paths.output_dir = cache
    return cfg


def flops_per_image(model: torch.nn.Module, batch: dict) -> float:
    """Forward + backward FLOPs of one training step, per image (counted, not estimated)."""
    with FlopCounterMode(display=False) as counter:
        model(batch["image"]).sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch["image"].shape[0]


def plain_loop(cfg, dm, seed: int) -> float:
    """The same recipe without Lightning: what a careful user would write by hand."""
    L.seed_everything(seed, verbose=False)
    module = instantiate(cfg.model, num_classes=dm.num_classes, class_weights=dm.split.class_weights)
    opt = module.optimizer_factory(params=module.parameters())
    sched = module.scheduler_factory(optimizer=opt)
    loader = dm.loader("retain", shuffle=True)
    start = time.perf_counter()
    module.train()
    for _ in range(cfg.trainer.max_epochs):
        for batch in loader:
            opt.zero_grad(set_to_none=True)
            loss = module.loss(module.net(batch["image"]), batch["age_group"])
            loss.backward()
            opt.step()
        sched.step()
    return time.perf_counter() - start


def bench(name: str, overrides: list[str], cache: str) -> None:
    cfg = config(overrides, cache)
    dm = instantiate(cfg.data)
    dm.setup()
    images = len(dm.dataset("retain")) * cfg.trainer.max_epochs
    model = instantiate(cfg.model, num_classes=dm.num_classes)
    flops = flops_per_image(model.net, next(iter(dm.loader("retain", shuffle=True))))
    plain_loop(cfg, dm, seed=0)  # warm-up: allocator and oneDNN kernels
    t_plain = min(plain_loop(cfg, dm, seed=s) for s in (1, 2))
    t_light = min(fit(cfg, dm, "retain", seed=s, validate=False)[1] for s in (1, 2))
    for label, t in (("plain PyTorch", t_plain), ("Lightning fit", t_light)):
        print(f"{name:<22} {label:<14} {t:7.2f} s  {images / t:8.0f} img/s  {flops * images / t / 1e9:6.2f} GFLOP/s")
    print(
        f"{name:<22} Lightning overhead: {100 * (t_light - t_plain) / t_plain:+.1f}%  "
        f"({flops / 1e6:.1f} MFLOP/img train step, {images} images = {len(dm.dataset('retain'))} x "
        f"{cfg.trainer.max_epochs} epochs, {torch.get_num_threads()} threads)"
    )


def _one_pack(cache: str, m: int | None) -> dict:
    """In a fresh process (its peak memory is the pack's): m models packed, or None: Lightning's fit of one."""
    set_threads(1)
    quiet_lightning()
    cfg = config([f"trainer.max_epochs={PACK_EPOCHS}"], cache)
    dm = instantiate(cfg.data)
    dm.setup()
    if m is not None:
        return measure(cfg, dm, m, "cpu")
    images = len(dm.batches("retain", shuffle=True, drop_last=dm.drop_last)) * dm.batch_size * PACK_EPOCHS
    before, cpu = max_rss(), time.process_time()
    seconds = fit(cfg, dm, "retain", seed=0, validate=False)[1]
    cpu = time.process_time() - cpu
    return {
        "m": 1,
        "seconds": seconds,
        "img_s": images / seconds,
        "img_cpu_s": images / cpu,
        "memory_bytes": max_rss(),
        "added_bytes": max_rss() - before,
    }


def bench_packs(cache: str) -> None:
    """The default preset's pool models trained M at a time, one thread, against the matmul peak.

    Each M in a fresh process, PACK_ROUNDS rounds over every M in turn. img/s per core counts the process's
    CPU time, not the wall clock, so that other processes waiting for the cores move it less; the best
    round of each M is shown (the least disturbed) with the spread of the rounds, and the best wall img/s."""
    set_threads(1)
    cfg = config([f"trainer.max_epochs={PACK_EPOCHS}"], cache)
    dm = instantiate(cfg.data)
    dm.setup()  # builds the data once, before the processes read it
    flops = step_flops(cfg, dm)
    load = os.getloadavg()[0]
    peak = matmul_peak("cpu")
    print(
        f"packed training, default preset ({cfg.model.net.name}, {dm.faces.resolution} px, batch {dm.batch_size}, "
        f"{PACK_EPOCHS} epoch(s) of {len(dm.dataset('retain'))} retain images), 1 thread, best of {PACK_ROUNDS} "
        f"rounds; matmul peak {peak / 1e9:.1f} GFLOP/s; load average {load:.2f} on {os.cpu_count()} cores"
    )
    runs: dict[int | None, list[dict]] = {m: [] for m in (None, *PACKS)}
    ctx = multiprocessing.get_context("spawn")
    for _ in range(PACK_ROUNDS):
        for m in runs:
            with ctx.Pool(1) as pool:
                runs[m].append(pool.apply(_one_pack, (cache, m)))
    print(
        f"{'M':>22} {'img/s/core':>10} {'x fit':>6} {'rounds':>11} {'wall img/s':>10} {'GFLOP/s':>8} {'of peak':>8} "
        f"{'peak RSS':>9} {'training':>9}"
    )
    fit_rate = max(r["img_cpu_s"] for r in runs[None])
    for m, rs in runs.items():
        r = max(rs, key=lambda r: r["img_cpu_s"])
        rate, spread = r["img_cpu_s"] * flops, f"{min(x['img_cpu_s'] for x in rs):.0f}-{r['img_cpu_s']:.0f}"
        print(
            f"{'Lightning fit (pack=1)' if m is None else f'packed {m}':>22} {r['img_cpu_s']:10.0f} "
            f"{r['img_cpu_s'] / fit_rate:5.2f}x {spread:>11} {max(x['img_s'] for x in rs):10.0f} {rate / 1e9:8.2f} "
            f"{rate / peak:7.1%} {r['memory_bytes'] / 2**20:6.0f} MB {r['added_bytes'] / 2**20:+6.0f} MB"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def main() -> None:
    quiet_lightning()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu, epochs {EPOCHS}")
    only = sys.argv[1] if len(sys.argv) > 1 else None
    with tempfile.TemporaryDirectory() as cache:
        for name, overrides in PRESETS.items():
            if only is not None and only not in name:
                continue
            bench(name, overrides, cache)
        if only is None or only == "packs":
            bench_packs(cache)


if __name__ == "__main__":
    main()
