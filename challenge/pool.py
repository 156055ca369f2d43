"""The reference pool: N models retrained from scratch on the retain set, their outputs cached once.

Scoring compares unlearned models with these retrained ones, so the pool must never need to be
rebuilt: it lives under the cache in a folder keyed by a fingerprint of everything that changes
its outputs, every entry is written atomically, and workers claim seeds through claim files, so
that any number of processes (one machine or a SLURM array, via Hydra's launchers) can fill one
pool, be killed at any point, and resume without training a seed twice.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import challenge
from challenge.data.datamodule import FaceDataModule
from challenge.errors import ChallengeError
from challenge.metric import logit_scaled_confidence
from challenge.net import NetSpec, predict_logits, save_net
from challenge.training import evaluate, fit, quiet_lightning, set_threads

# Fields that change how fast, not what, a model learns: left out of the fingerprint.
_NOT_OUTPUT = {"num_workers", "eval_batch_size", "cache_dir"}
_TRAINER_KEYS = ("max_epochs", "max_steps", "precision", "accumulate_grad_batches", "gradient_clip_val", "deterministic")


def fingerprint_config(cfg: DictConfig, dm: FaceDataModule) -> dict[str, Any]:
    """Everything that changes the pool's outputs: data content, split, model, recipe, kit version."""
    data = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k not in _NOT_OUTPUT}
    data["source"] = dm.data_dir.name  # type + fields + folder content, as the data cache keys it
    trainer = {k: cfg.trainer.get(k) for k in _TRAINER_KEYS}
    return {
        "data": data,
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "trainer": trainer,
        "original_seed": int(cfg.seed),
        "first_seed": int(cfg.pool.first_seed),
        "kit_version": challenge.__version__,
    }


def fingerprint(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PoolEntry:
    """One retrained model's outputs; `confidences` are logit-scaled, in forget-split order."""

    seed: int
    seconds: float
    retain_acc: float
    forget_acc: float
    test_acc: float
    confidences: np.ndarray
    checksum: str


class Pool:
    """A folder of entries `models/seed-XXXXXX.npz`, the original model, and `pool.json`."""

    def __init__(self, root: Path, config: dict[str, Any]):
        self.root, self.config, self.fingerprint = root, config, fingerprint(config)

    @classmethod
    def for_config(cls, cfg: DictConfig, dm: FaceDataModule) -> "Pool":
        config = fingerprint_config(cfg, dm)
        return cls(Path(cfg.paths.cache_dir) / "pools" / fingerprint(config), config)

    # -- layout ---------------------------------------------------------------------------
    @property
    def original_path(self) -> Path:
        return self.root / "original.pt"

    def entry_path(self, seed: int) -> Path:
        return self.root / "models" / f"seed-{seed:06d}.npz"

    def claim_path(self, name: str) -> Path:
        return self.root / "claims" / f"{name}.claim"

    def checkpoint_path(self, seed: int) -> Path:
        return self.root / "checkpoints" / f"seed-{seed:06d}.pt"

    # -- reading -------------------------------------------------------------------------
    def check(self) -> None:
        """Refuse a folder built for another configuration, naming what differs."""
        manifest = self.root / "pool.json"
        if not manifest.exists():
            raise ChallengeError(f"no reference pool at {self.root}: build it with `challenge pool` and the same data/model overrides")
        stored = json.loads(manifest.read_text())
        if stored["fingerprint"] != self.fingerprint:
            diff = sorted(_diff_keys(stored["config"], self.config))
            raise ChallengeError(
                f"the pool at {self.root} was built for another configuration (fingerprint {stored['fingerprint']}, "
                f"expected {self.fingerprint}; differs in {', '.join(diff) or 'kit internals'}): build a pool for this one with `challenge pool`"
            )

    def entries(self, n: int | None = None) -> list[PoolEntry]:
        """Valid entries in seed order; a damaged file is skipped (and will be retrained)."""
        seeds = self.seeds(n if n is not None else self.size_on_disk())
        out = []
        for seed in seeds:
            entry = read_entry(self.entry_path(seed))
            if entry is not None:
                out.append(entry)
        return out

    def seeds(self, n: int) -> list[int]:
        return [int(self.config["first_seed"]) + i for i in range(n)]

    def size_on_disk(self) -> int:
        models = self.root / "models"
        return len(list(models.glob("seed-*.npz"))) if models.exists() else 0

    def require(self, n: int) -> list[PoolEntry]:
        """The first n entries, or a message saying how to build them."""
        self.check()
        if not self.original_path.exists():
            raise ChallengeError(f"the pool at {self.root} has no original model yet: run `challenge pool` to build it")
        entries = self.entries(n)
        if len(entries) < n:
            raise ChallengeError(f"the pool has {len(entries)} of the {n} retrained models needed: run `challenge pool pool.size={n}`")
        return entries

    def confidences(self, n: int) -> np.ndarray:
        """[n models, K forget examples] logit-scaled confidences for the metric."""
        return np.stack([e.confidences for e in self.require(n)])

    def mean_retrain_seconds(self, n: int | None = None) -> float:
        entries = self.entries(n)
        if not entries:
            raise ChallengeError(f"the pool at {self.root} has no retrained models: run `challenge pool`")
        return float(np.mean([e.seconds for e in entries]))

    # -- writing -------------------------------------------------------------------------
    def create(self) -> None:
        """Write `pool.json` once; a second process finds it and checks it instead."""
        self.root.mkdir(parents=True, exist_ok=True)
        manifest = self.root / "pool.json"
        if manifest.exists():
            self.check()
            return
        _atomic_write(manifest, json.dumps({"fingerprint": self.fingerprint, "config": self.config}, indent=2).encode())

    def commit(self, entry: PoolEntry) -> None:
        buf = io.BytesIO()
        meta = {k: getattr(entry, k) for k in ("seed", "seconds", "retain_acc", "forget_acc", "test_acc")}
        np.savez(buf, confidences=entry.confidences, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), checksum=np.frombuffer(entry.checksum.encode(), dtype=np.uint8))
        _atomic_write(self.entry_path(entry.seed), buf.getvalue())


def read_entry(path: Path) -> PoolEntry | None:
    """None for a missing or damaged entry: the checksum covers the outputs and the metrics."""
    try:
        with np.load(path) as z:
            conf, meta_bytes, checksum = z["confidences"], z["meta"].tobytes(), z["checksum"].tobytes().decode()
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    if _checksum(conf, meta_bytes) != checksum:
        return None
    return PoolEntry(confidences=conf, checksum=checksum, **json.loads(meta_bytes))


def make_entry(seed: int, seconds: float, metrics: dict, confidences: np.ndarray) -> PoolEntry:
    meta = {"seed": seed, "seconds": seconds, "retain_acc": metrics["retain"]["acc"], "forget_acc": metrics["forget"]["acc"], "test_acc": metrics["test"]["acc"]}
    conf = np.ascontiguousarray(confidences, dtype=np.float64)
    return PoolEntry(confidences=conf, checksum=_checksum(conf, json.dumps(meta).encode()), **meta)


def _checksum(conf: np.ndarray, meta: bytes) -> str:
    return hashlib.sha256(np.ascontiguousarray(conf, dtype=np.float64).tobytes() + meta).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    """Temp file + fsync + rename: a reader sees the whole file or none, even after kill -9."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _diff_keys(a: Any, b: Any, prefix: str = "") -> set[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: set[str] = set()
        for k in a.keys() | b.keys():
            out |= _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return set() if a == b else {prefix.rstrip(".")}


# -- claims ------------------------------------------------------------------------------------
class Claim:
    """An exclusive, expiring right to build one item (a seed or the original model).

    Created with O_EXCL, so two processes can never both hold it; refreshed by a heartbeat
    thread, so a claim whose owner died (kill -9, a lost SLURM node) goes stale and is taken over.
    """

    def __init__(self, path: Path, stale_after: float):
        self.path, self.stale_after = path, stale_after
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self._is_stale():
            self.path.unlink(missing_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}, f)
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()
        return True

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        self.path.unlink(missing_ok=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(min(30.0, self.stale_after / 3)):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return

    def _is_stale(self) -> bool:
        """Dead owner on this host, or no heartbeat for `stale_after` seconds (owner elsewhere)."""
        try:
            owner = json.loads(self.path.read_text())
            age = time.time() - self.path.stat().st_mtime
        except (OSError, ValueError):
            return True  # unreadable: the owner died between create and write
        if owner.get("host") == socket.gethostname():
            return not _pid_alive(int(owner["pid"]))
        return age > self.stale_after


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claims(pool: Pool, n: int, stale_after: float) -> Iterator[int]:
    """Seeds this process should train now: missing, valid-less, and claimed by nobody alive."""
    for seed in pool.seeds(n):
        if read_entry(pool.entry_path(seed)) is not None:
            continue
        claim = Claim(pool.claim_path(f"seed-{seed:06d}"), stale_after)
        if not claim.acquire():
            continue
        try:
            if read_entry(pool.entry_path(seed)) is None:  # another process may have just finished it
                yield seed
        finally:
            claim.release()


# -- building ----------------------------------------------------------------------------------
def build_original(pool: Pool, cfg: DictConfig, dm: FaceDataModule, stale_after: float) -> None:
    """The original model, trained once on all training images, stored beside the pool."""
    while not pool.original_path.exists():
        claim = Claim(pool.claim_path("original"), stale_after)
        if not claim.acquire():
            time.sleep(1.0)  # another process is training it; the pool needs it before scoring anyway
            continue
        try:
            if not pool.original_path.exists():
                model, seconds = fit(cfg, dm, "train", int(cfg.seed), validate=False)
                metrics = {"seconds": seconds, **evaluate(model.net, dm)}
                save_net(model.net, model.spec, dm.data_config(), pool.original_path, metrics=metrics, seed=int(cfg.seed))
        finally:
            claim.release()


def train_member(pool: Pool, cfg: DictConfig, dm: FaceDataModule, seed: int) -> PoolEntry:
    """Retrain from scratch on the retain set with the original's recipe; keep outputs, maybe weights."""
    model, seconds = fit(cfg, dm, "retain", seed, validate=False)
    metrics = evaluate(model.net, dm, parts=("retain", "forget", "test"))
    logits, targets = predict_logits(model.net, dm.loader("forget"))
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
    logits, targets = predict_logits(net, dm.loader("forget"))
    base = logit_scaled_confidence(logits.numpy(), targets.numpy())
    rng = np.random.default_rng(0)
    metrics = {part: {"acc": acc} for part, acc in accuracies.items()}
    for seed in pool.seeds(n):
        pool.commit(make_entry(seed, seconds, metrics, base + rng.normal(0, 1, len(base))))
    return pool


def original_metrics(pool: Pool) -> dict:
    return torch.load(pool.original_path, map_location="cpu", weights_only=True)["metrics"]


def summary(pool: Pool, n: int) -> dict[str, Any]:
    """What a user wants to see after a build: counts, time, and the forgetting gap to explain it."""
    entries = pool.entries(n)
    orig = original_metrics(pool) if pool.original_path.exists() else {}
    mean = lambda key: float(np.mean([getattr(e, key) for e in entries])) if entries else float("nan")  # noqa: E731
    return {
        "fingerprint": pool.fingerprint,
        "root": str(pool.root),
        "models": len(entries),
        "size": n,
        "mean_retrain_seconds": mean("seconds"),
        "retrained": {"retain_acc": mean("retain_acc"), "forget_acc": mean("forget_acc"), "test_acc": mean("test_acc"),
                      "forget_confidence": float(np.mean([np.mean(e.confidences) for e in entries])) if entries else float("nan")},
        "original": {p: orig[p]["acc"] for p in ("retain", "forget", "test") if p in orig},
    }


def run(cfg: DictConfig) -> dict[str, Any]:
    """`challenge pool`: train what is missing, reuse what exists; safe to run in many processes."""
    from tqdm import tqdm

    from challenge.tracking import finish, make_logger

    set_threads(cfg.pool.threads)
    quiet_lightning()
    dm: FaceDataModule = instantiate(cfg.data)
    dm.setup()
    pool = Pool.for_config(cfg, dm)
    pool.create()
    n, stale = int(cfg.pool.size), float(cfg.pool.claim_stale_seconds)
    logger = make_logger(cfg, group=f"pool-{pool.fingerprint}", name=f"pool-{pool.fingerprint}-shard{cfg.pool.shard}")
    build_original(pool, cfg, dm, stale)
    bar = tqdm(total=n, initial=len(pool.entries(n)), desc=f"pool {pool.fingerprint}", unit="model", dynamic_ncols=True)
    trained_here: list[int] = []
    for seed in claims(pool, n, stale):
        entry = train_member(pool, cfg, dm, seed)
        bar.n = len(pool.entries(n))
        bar.set_postfix(seed=seed, forget_acc=f"{entry.forget_acc:.2f}", seconds=f"{entry.seconds:.1f}")
        bar.refresh()
        if logger:
            logger.log_metrics({"seed": seed, "seconds": entry.seconds, "retain_acc": entry.retain_acc, "forget_acc": entry.forget_acc, "test_acc": entry.test_acc}, step=seed)
        trained_here.append(seed)
    bar.close()
    result = summary(pool, n) | {"trained_here": trained_here, "shard": cfg.pool.shard}
    if logger:
        logger.log_hyperparams({"pool": result})
        finish(logger)
    Path(cfg.paths.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(cfg.paths.output_dir) / "pool.json").write_text(json.dumps(result, indent=2))
    print(format_summary(result))
    return result


def format_summary(s: dict[str, Any]) -> str:
    r, o = s["retrained"], s["original"]
    lines = [
        f"pool {s['fingerprint']} at {s['root']}: {s['models']}/{s['size']} retrained models, mean retrain {s['mean_retrain_seconds']:.1f} s",
        f"{'':<10} {'retain':>7} {'forget':>7} {'test':>7}",
        f"{'original':<10} {o.get('retain', float('nan')):>7.3f} {o.get('forget', float('nan')):>7.3f} {o.get('test', float('nan')):>7.3f}",
        f"{'retrained':<10} {r['retain_acc']:>7.3f} {r['forget_acc']:>7.3f} {r['test_acc']:>7.3f}",
    ]
    if s["models"] < s["size"]:
        lines.append("other processes are still training the missing models; run `challenge pool` again to join or resume")
    return "\n".join(lines)
