"""`challenge pool`: the original model and N retrained reference models, built or reused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from challenge.data.dataset import FaceData
from challenge.files import write_json
from challenge.parallel import job_workers
from challenge.pool.build import build, format_summary, summary
from challenge.pool.folder import Pool, pool_models


def run(cfg: DictConfig) -> dict[str, Any]:
    """`challenge pool`: train what is missing, reuse what exists; safe to run in many processes."""
    from challenge.reports.tracking import finish, make_logger

    dm: FaceData = instantiate(cfg.data)
    dm.setup()
    pool = Pool.for_config(cfg, dm)
    pool.create()
    n = int(cfg.pool.size)
    built = build(cfg, pool, pool_models(cfg), job_workers(cfg.pool.get("workers")))
    result = summary(pool, n) | {
        "trained_here": built["trained"],
        "shard": cfg.pool.shard,
        "processes": built["processes"],
    }
    logger = make_logger(cfg, group=f"pool-{pool.fingerprint}", name=f"pool-{pool.fingerprint}-shard{cfg.pool.shard}")
    if logger:
        for entry in pool.entries(n):
            if entry.seed in built["trained"]:
                logger.log_metrics(
                    {
                        "seed": entry.seed,
                        "seconds": entry.seconds,
                        "retain_acc": entry.retain_acc,
                        "forget_acc": entry.forget_acc,
                        "test_acc": entry.test_acc,
                    },
                    step=entry.seed,
                )
        logger.log_hyperparams({"pool": result})
        finish(logger)
    Path(cfg.paths.output_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(cfg.paths.output_dir) / "pool.json", result, indent=2)
    print(format_summary(result))
    return result
