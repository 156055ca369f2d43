"""Packed training's speed (pool.pack = M), shared by benchmarks/bench_training.py and benchmarks/gpu_check.py.

One measurement: `fit_pack` (the pool's own packed loop) on the retain set, the images per second of all M
models together, the FLOPs of one training step per image (counted on the unpacked net) against the peak of
a large matmul timed on the same device in the same run, and the peak memory.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.flop_counter import FlopCounterMode

from challenge.data.dataset import FaceData
from challenge.training.packed import fit_pack

# The full 2023 pool: 512 retrained models x 30 epochs x 30,000 retain images (of ~33,000 CASIA-SURF faces).
POOL_2023_IMAGES = 512 * 30 * 30_000


def matmul_peak(device: str, n: int = 2048) -> float:
    """FLOP/s of an n x n float32 matmul (float32 kernels on a GPU, TF32 off): the device's reachable peak here."""
    a, b = (torch.randn(n, n, device=device) for _ in range(2))
    a @ b  # warm-up
    reps, timings = (1, 5) if device == "cpu" else (50, 3)
    best = float("inf")
    for _ in range(timings):  # the best of a few: the least disturbed by other processes
        _sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 * reps / best


def flops_per_image(cfg: DictConfig, dm: FaceData) -> float:
    """Forward + backward FLOPs of one training step of one model, per image (counted, not estimated)."""
    net = instantiate(cfg.model, num_classes=dm.num_classes).net
    images = dm.dataset("retain")[0]["image"].unsqueeze(0).repeat(8, 1, 1, 1)
    with FlopCounterMode(display=False) as counter:
        net(images).sum().backward()
    return counter.get_total_flops() / 8


def measure(cfg: DictConfig, dm: FaceData, m: int, device: str) -> dict[str, Any]:
    """Train m models packed (seeds 0..m-1) for cfg.trainer.max_epochs on the retain set; img/s of the pack."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before, cpu = 0 if device == "cuda" else max_rss(), time.process_time()
    fitted = fit_pack(cfg, dm, "retain", list(range(m)), device)
    cpu = time.process_time() - cpu
    images = m * len(dm.batches("retain", shuffle=True, drop_last=dm.drop_last)) * dm.batch_size
    images *= int(cfg.trainer.max_epochs)
    memory = torch.cuda.max_memory_allocated() if device == "cuda" else max_rss()
    return {
        "m": m,
        "seconds": fitted.seconds,
        "img_s": images / fitted.seconds,
        "img_cpu_s": images / cpu,  # per second of this process's CPU time: per core, whatever else runs
        "memory_bytes": memory,  # the GPU's peak allocated, or the process's peak RSS (imports and data included)
        "added_bytes": memory - before,  # what training the pack added to that peak
    }


def projection_hours(img_s: float) -> float:
    """Hours to train the full 2023 pool at img_s on one device."""
    return POOL_2023_IMAGES / img_s / 3600


def max_rss() -> int:
    """This process's peak resident memory so far, in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
