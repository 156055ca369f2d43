"""Building a pool: the original model and N retrained ones, by any number of processes at once.

Workers claim seeds (challenge.pool.claims), train them single-threaded with the original's
recipe and commit each entry atomically (challenge.pool.folder), so `challenge pool`, a Hydra
multirun (joblib, submitit on SLURM), `challenge baseline` and `competition init` can all fill one
pool, be killed at any point, and resume without training a seed twice or changing a bit.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from challenge.data.dataset import FaceData
from challenge.parallel import run_parallel
from challenge.pool.claims import Claim, claims
from challenge.pool.folder import Pool, PoolEntry, device_type, make_entry, pool_models, with_train
from challenge.pool.reference import format_reference, original_metrics, reference
from challenge.scoring.metric import logit_scaled_confidence
from challenge.training.net import NetSpec, predict_logits, save_net
from challenge.training.recipe import evaluate, fit, quiet_lightning, set_threads


# -- building ----------------------------------------------------------------------------------
def build_original(pool: Pool, cfg: DictConfig, dm: FaceData) -> None:
    """The original model, trained once on all training images, stored beside the pool."""
    while not pool.original_path.exists():
        with Claim(pool.claim_path("original")) as held:
            if not held:
                time.sleep(1.0)  # another process is training it; the pool needs it before scoring anyway
                continue
            if not pool.original_path.exists():
                model, seconds = fit(cfg, dm, "train", int(cfg.seed), validate=False)
                metrics = {"seconds": seconds, **with_train(evaluate(model.net, dm, device=device_type(cfg)))}  # train too, for the reference table
                save_net(model.net, model.spec, dm.data_config(), pool.original_path, metrics=metrics, seed=int(cfg.seed))


def train_member(pool: Pool, cfg: DictConfig, dm: FaceData, seed: int) -> PoolEntry:
    """Retrain from scratch on the retain set with the original's recipe; keep outputs, maybe weights."""
    model, seconds = fit(cfg, dm, "retain", seed, validate=False)
    device = device_type(cfg)
    metrics = evaluate(model.net, dm, ("retain", "forget", "test"), device)
    logits, targets = predict_logits(model.net, dm.batches("forget", device=device), device)
    entry = make_entry(seed, seconds, metrics, logit_scaled_confidence(logits.numpy(), targets.numpy()))
    if cfg.pool.keep_checkpoints:
        save_net(model.net, model.spec, dm.data_config(), pool.checkpoint_path(seed), seed=seed)
    pool.commit(entry)
    return entry


def write_stand_in(cfg: DictConfig, n: int, seconds: float, accuracies: dict[str, float]) -> Pool:
    """n entries without training: an untrained original, and its forget confidences plus noise.

    Verdicts and sandbox overheads do not depend on how a pool was trained, while even a tiny real
    pool costs minutes on a loaded laptop: tests and benchmarks use this. Its scores mean nothing,
    and it carries a real pool's fingerprint, so write it in a cache of its own.
    """
    dm = instantiate(cfg.data)
    dm.setup()
    pool = Pool.for_config(cfg, dm)
    pool.create()
    torch.manual_seed(0)
    spec = NetSpec(cfg.model.net.name, dm.num_classes)
    net = spec.create()
    save_net(net, spec, dm.data_config(), pool.original_path)
    device = device_type(cfg)
    logits, targets = predict_logits(net, dm.batches("forget", device=device), device)
    base = logit_scaled_confidence(logits.numpy(), targets.numpy())
    rng = np.random.default_rng(0)
    metrics = {part: {"acc": acc} for part, acc in accuracies.items()}
    for seed in pool.seeds(n):
        pool.commit(make_entry(seed, seconds, metrics, base + rng.normal(0, 1, len(base))))
    return pool


def summary(pool: Pool, n: int) -> dict[str, Any]:
    """What a user wants to see after a build: counts, time, and the forgetting gap to explain it
    (`reference`: the original against the retrained mean, as the scorer's result.json has it)."""
    entries = pool.entries(n)
    return {
        "fingerprint": pool.fingerprint,
        "root": str(pool.root),
        "models": len(entries),
        "size": n,
        "mean_retrain_seconds": float(np.mean([e.seconds for e in entries])) if entries else float("nan"),
        "reference": reference(original_metrics(pool.original_path), entries, pool.root),
    }


def build(cfg: DictConfig, pool: Pool, n: int, workers: int) -> dict[str, Any]:
    """The original and n retrained models, in `workers` processes of one thread each that claim seeds.

    The one pool builder of the kit (`challenge pool`, `challenge baseline`, `competition init`):
    however the work is split, every model trains single-threaded from its seed, so the bits are
    the same. Shard 0 trains the original first; the others start on the seeds at once.
    """
    todo = (0 if pool.original_path.exists() else 1) + n - len(pool.entries(n))
    if todo == 0:
        return {"trained": [], "original_seconds": None, "processes": 0}
    procs = max(1, min(workers, todo))
    print(f"pool {pool.fingerprint}: training {todo} model(s) in {procs} process(es) of {int(cfg.pool.threads)} thread(s)", flush=True)
    if procs == 1:
        shards = [shard(cfg, 0)]
    else:
        plain = OmegaConf.to_container(cfg, resolve=True)
        shards = run_parallel(_spawned_shard, [(plain, k) for k in range(procs)], procs, progress=_progress(pool, n))
    build_original(pool, cfg, instantiate(cfg.data))  # normally done; waits if another process still trains it
    trained = sorted(seed for s in shards for seed in s["trained"])
    original = next((s["original_seconds"] for s in shards if s["original_seconds"] is not None), None)
    return {"trained": trained, "original_seconds": original, "processes": procs}


def shard(cfg: DictConfig, index: int) -> dict[str, Any]:
    """One worker: claim and train seeds until none is left (shard 0 trains the original first)."""
    set_threads(int(cfg.pool.threads))
    quiet_lightning()
    dm: FaceData = instantiate(cfg.data)
    dm.setup()
    pool = Pool.for_config(cfg, dm)
    original = None
    if index == 0 and not pool.original_path.exists():
        t = time.perf_counter()
        build_original(pool, cfg, dm)
        original = time.perf_counter() - t
    trained = []
    for seed in claims(pool, pool_models(cfg)):
        entry = train_member(pool, cfg, dm, seed)
        print(f"  seed {seed}: retrained in {entry.seconds:.1f} s, forget accuracy {entry.forget_acc:.3f}", flush=True)
        trained.append(seed)
    return {"trained": trained, "original_seconds": original}


def _spawned_shard(plain: dict[str, Any], index: int) -> dict[str, Any]:
    return shard(OmegaConf.create(plain), index)


def _progress(pool: Pool, n: int) -> Any:
    seen = {"count": -1}

    def check() -> str | None:
        count = len(pool.entries(n))
        if count == seen["count"]:
            return None
        seen["count"] = count
        return f"  pool: {count}/{n} retrained models"

    return check


def default_workers(cfg: DictConfig) -> int:
    """pool.workers, or: the cores when run alone, one inside a Hydra multirun (its launcher parallelises)."""
    if cfg.pool.get("workers") is not None:
        return int(cfg.pool.workers)
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized() and HydraConfig.get().mode is not None and HydraConfig.get().mode.name == "MULTIRUN":
        return 1
    return os.cpu_count() or 1


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"pool {s['fingerprint']} at {s['root']}: {s['models']}/{s['size']} retrained models, mean retrain {s['mean_retrain_seconds']:.1f} s",
        *format_reference(s["reference"]),
    ]
    if s["models"] < s["size"]:
        lines.append("other processes are still training the missing models; run `challenge pool` again to join or resume")
    return "\n".join(lines)
