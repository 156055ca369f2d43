"""Building a pool: the original model and N retrained ones, by any number of processes at once.

Workers claim seeds (challenge.pool.claims), train them single-threaded with the original's
recipe and commit each entry atomically (challenge.pool.folder), so `challenge pool`, a Hydra
multirun (joblib, submitit on SLURM), `challenge baseline` and `competition init` can all fill one
pool, be killed at any point, and resume without training a seed twice or changing a bit.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from challenge.data.dataset import FaceData
from challenge.parallel import run_parallel
from challenge.pool.claims import Claim, claims
from challenge.pool.folder import (
    NOT_OUTPUT,
    Pool,
    PoolEntry,
    collateral_size,
    device_type,
    make_entry,
    pool_models,
    read_entry,
    with_train,
)
from challenge.pool.reference import format_reference, original_metrics, reference
from challenge.scoring.collateral import PARTS as COLLATERAL_PARTS
from challenge.scoring.collateral import sampled
from challenge.scoring.metric import logit_scaled_confidence
from challenge.training.net import NetSpec, logits_in_batches, predict_logits, save_net
from challenge.training.packed import check_packable, evaluate_pack, fit_pack
from challenge.training.recipe import evaluate, fit, quiet_lightning, set_threads


# -- building ----------------------------------------------------------------------------------
def build_originals(pool: Pool, cfg: DictConfig, dm: FaceData) -> None:
    """pool.originals original models (seeds `seed`, `seed` + 1, ...), each trained once on all training images;
    for a corrective scenario also the clean model, the original's twin trained without the manipulation."""
    for s in range(originals(cfg)):
        build_original(pool, cfg, dm, s)
    if dm.forget.manipulates:
        # evaluated on the data as the other models are (the forget set as found: triggered, mislabelled), so that
        # its figures sit beside theirs
        _train_once(pool.clean_path, pool.claim_path("clean"), cfg, dm.as_clean(), int(cfg.seed), judged=dm)


def originals(cfg: DictConfig) -> int:
    return int(cfg.pool.get("originals", 1))


def before_retraining(pool: Pool, cfg: DictConfig, dm: FaceData) -> list[Path]:
    """The models `build_originals` trains: the originals, and the clean model where the scenario has one."""
    clean = [pool.clean_path] if dm.forget.manipulates else []
    return [pool.original_of(s) for s in range(originals(cfg))] + clean


def build_original(pool: Pool, cfg: DictConfig, dm: FaceData, s: int = 0) -> None:
    """Original model s, trained once on all training images, stored beside the pool."""
    claim = pool.claim_path("original" if s == 0 else f"original-{s}")
    _train_once(pool.original_of(s), claim, cfg, dm, int(cfg.seed) + s)


def _train_once(
    path: Path, claim: Path, cfg: DictConfig, dm: FaceData, seed: int, judged: FaceData | None = None
) -> None:
    """A model trained on all training images, once whichever process gets there first, with its figures on
    `judged` (the training data's own parts unless given)."""
    while not path.exists():
        with Claim(claim) as held:
            if not held:
                time.sleep(1.0)  # another process is training it; the pool needs it before scoring anyway
                continue
            if not path.exists():
                model, seconds = fit(cfg, dm, "train", seed, validate=False)
                metrics = {
                    "seconds": seconds,
                    **with_train(evaluate(model.net, judged or dm, device=device_type(cfg))),
                }  # train too, for the reference table
                save_net(model.net, model.spec, dm.data_config(), path, metrics=metrics, seed=seed)


def train_member(pool: Pool, cfg: DictConfig, dm: FaceData, seed: int) -> PoolEntry:
    """Retrain from scratch on the retain set with the original's recipe; keep outputs, maybe weights."""
    model, seconds = fit(cfg, dm, "retain", seed, validate=False)
    device = device_type(cfg)
    metrics = evaluate(model.net, dm, ("retain", "forget", "test", "focus"), device)  # focus: none for most splits
    logits, targets = predict_logits(model.net, dm.batches("forget", device=device), device)
    confidences = logit_scaled_confidence(logits.numpy(), targets.numpy())
    entry = make_entry(seed, seconds, metrics, confidences, collateral_outputs(model.net, cfg, dm, device))
    if cfg.pool.keep_checkpoints:
        save_net(model.net, model.spec, dm.data_config(), pool.checkpoint_path(seed), seed=seed)
    pool.commit(entry)
    return entry


def train_pack(pool: Pool, cfg: DictConfig, dm: FaceData, seeds: list[int]) -> list[PoolEntry]:
    """`train_member` for pool.pack seeds at once, as one packed network (challenge.training.packed).

    Every model of the pack is trained and evaluated, and those without a valid entry committed: after a
    kill between two commits, the pack is trained again and its missing seeds get the bits the others got.
    Each entry's `seconds` is its share of the pack's time, what one model cost.
    """
    device = device_type(cfg)
    fitted = fit_pack(cfg, dm, "retain", seeds, device)
    figures, outputs = evaluate_pack(fitted, dm, ("retain", "forget", "test", "focus"), device)
    logits, targets = outputs["forget"]
    entries = []
    for index, seed in enumerate(seeds):
        if read_entry(pool.entry_path(seed)) is not None:
            continue
        confidences = logit_scaled_confidence(logits[index].numpy(), targets.numpy())
        net = fitted.net_of(index)
        collateral = collateral_outputs(net, cfg, dm, device)
        entry = make_entry(seed, fitted.seconds / len(seeds), figures[index], confidences, collateral)
        if cfg.pool.keep_checkpoints:
            save_net(net, fitted.modules[index].spec, dm.data_config(), pool.checkpoint_path(seed), seed=seed)
        pool.commit(entry)
        entries.append(entry)
    return entries


def collateral_outputs(net: torch.nn.Module, cfg: DictConfig, dm: FaceData, device: str) -> dict[str, np.ndarray]:
    """The net's confidences on the collateral samples of retain and test (challenge.scoring.collateral), in the
    judge's fixed evaluation batches; empty when pool.collateral is 0."""
    k, out = collateral_size(cfg, dm), {}
    for part in COLLATERAL_PARTS if k else ():
        ds = dm.dataset(part)
        images, groups = sampled(ds.images[ds.indices], ds.groups[ds.indices], k)
        logits = logits_in_batches(net, images, dm.eval_batch_size, device)
        out[part] = logit_scaled_confidence(logits.numpy(), groups.numpy())
    return out


def write_stand_in(cfg: DictConfig, n: int, seconds: float, accuracies: dict[str, float]) -> Pool:
    """n entries without training: untrained originals, and the first one's forget confidences plus noise.

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
    for s in range(1, originals(cfg)):  # the others (pool.originals), each its own untrained net
        torch.manual_seed(s)
        save_net(spec.create(), spec, dm.data_config(), pool.original_of(s))
    device = device_type(cfg)
    logits, targets = predict_logits(net, dm.batches("forget", device=device), device)
    base = logit_scaled_confidence(logits.numpy(), targets.numpy())
    rng = np.random.default_rng(0)
    metrics = {part: {"acc": acc} for part, acc in accuracies.items()}
    own, other_rng = collateral_outputs(net, cfg, dm, device), np.random.default_rng(1)  # forget's draws unchanged
    for seed in pool.seeds(n):
        collateral = {part: c + other_rng.normal(0, 1, len(c)) for part, c in own.items()}
        pool.commit(make_entry(seed, seconds, metrics, base + rng.normal(0, 1, len(base)), collateral))
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
    dm: FaceData = instantiate(cfg.data)  # its scenario: the data is loaded only where a model is trained
    missing_originals = sum(not path.exists() for path in before_retraining(pool, cfg, dm))
    missing = missing_originals + n - len(pool.entries(n))
    wanted = set(pool.seeds(n))
    packs = sum(any(s in wanted and read_entry(pool.entry_path(s)) is None for s in p) for p in pool.packs(n))
    todo = missing_originals + packs  # what one process does at a time
    if todo == 0:
        return {"trained": [], "original_seconds": None, "processes": 0}
    pack = int(cfg.pool.get("pack", 1))
    if pack > 1:
        check_packable(cfg, set(NOT_OUTPUT["trainer"]))
    procs = max(1, min(workers, todo))
    print(
        f"pool {pool.fingerprint}: training {missing} model(s){f' in {packs} pack(s) of {pack}' if pack > 1 else ''} "
        f"in {procs} process(es) of {int(cfg.pool.threads)} thread(s)",
        flush=True,
    )
    if procs == 1:
        shards = [shard(cfg, 0)]
    else:
        plain = OmegaConf.to_container(cfg, resolve=True)
        shards = run_parallel(_spawned_shard, [(plain, k) for k in range(procs)], procs, progress=_progress(pool, n))
    build_originals(pool, cfg, dm)  # normally done; waits if another process still trains one
    trained = sorted(seed for s in shards for seed in s["trained"])
    original = next((s["original_seconds"] for s in shards if s["original_seconds"] is not None), None)
    return {"trained": trained, "original_seconds": original, "processes": procs}


def shard(cfg: DictConfig, index: int) -> dict[str, Any]:
    """One worker: claim and train seeds until none is left (shard 0 trains the originals first)."""
    set_threads(int(cfg.pool.threads))
    quiet_lightning()
    dm: FaceData = instantiate(cfg.data)
    dm.setup()
    pool = Pool.for_config(cfg, dm)
    original = None
    if index == 0 and not all(path.exists() for path in before_retraining(pool, cfg, dm)):
        t = time.perf_counter()
        build_originals(pool, cfg, dm)
        original = time.perf_counter() - t
    trained = []
    for seeds in claims(pool, pool_models(cfg)):
        packed = int(cfg.pool.get("pack", 1)) > 1
        entries = train_pack(pool, cfg, dm, seeds) if packed else [train_member(pool, cfg, dm, seeds[0])]
        for entry in entries:
            share = " (its share of the pack)" if packed else ""
            print(
                f"  seed {entry.seed}: retrained in {entry.seconds:.1f} s{share}, "
                f"forget accuracy {entry.forget_acc:.3f}",
                flush=True,
            )
            trained.append(entry.seed)
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


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"pool {s['fingerprint']} at {s['root']}: {s['models']}/{s['size']} retrained models, mean retrain "
        f"{s['mean_retrain_seconds']:.1f} s",
        *format_reference(s["reference"]),
    ]
    if s["models"] < s["size"]:
        lines.append(
            "other processes are still training the missing models; run `challenge pool` again to join or resume"
        )
    return "\n".join(lines)
