"""The reference pool: N models retrained from scratch on the retain set, their outputs cached once.

Scoring compares unlearned models with these retrained ones, so the pool must never need to be
rebuilt: it lives under the cache in a folder keyed by a fingerprint of everything that changes
its outputs, every entry is written atomically, and workers claim seeds through claim files, so
that any number of processes (one machine or a SLURM array, via Hydra's launchers) can fill one
pool, be killed at any point, and resume without training a seed twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import socket
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
from challenge.parallel import run_parallel
from challenge.training import evaluate, fit, quiet_lightning, set_threads

# The only keys left out of the fingerprint: they cannot change a trained model's bits. Everything
# else of data/model/trainer is in, so a changed recipe never silently reuses a pool trained otherwise.
NOT_OUTPUT = {
    "data": {"num_workers": "loader processes yield the same batches in the same order", "cache_dir": "where the data is kept, not what it is"},
    "trainer": {
        "enable_progress_bar": "display", "enable_model_summary": "display", "log_every_n_steps": "logging",
        "default_root_dir": "where logs go", "enable_checkpointing": "the kit saves nets itself",
        "num_sanity_val_steps": "the pool trains without validation", "accelerator": "replaced by the device type it resolves to",
    },
}


def fingerprint_config(cfg: DictConfig, dm: FaceDataModule) -> dict[str, Any]:
    """Everything that changes the pool's bits: data content, split, model, recipe, device, threads, versions."""
    def kept(group: str) -> dict[str, Any]:
        return {k: v for k, v in OmegaConf.to_container(cfg[group], resolve=True).items() if k not in NOT_OUTPUT.get(group, {})}

    data = kept("data")
    data["source"] = dm.data_dir.name  # type + fields + folder content, as the data cache keys it
    return {
        "data": data,
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "trainer": kept("trainer"),
        "device": device_type(cfg),
        "threads": int(cfg.pool.threads),  # the thread count changes a CPU model's bits
        "original_seed": int(cfg.seed),
        "first_seed": int(cfg.pool.first_seed),
        "kit_version": challenge.__version__,
        "torch_version": torch.__version__,
    }


def device_type(cfg: DictConfig) -> str:
    """What `trainer.accelerator` resolves to on this machine, as Lightning picks it."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator not in ("auto", "gpu"):
        return accelerator
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if accelerator == "auto" and torch.backends.mps.is_available() else "cpu"


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
    """An exclusive right to build one item (a seed or the original model): a lease on a file.

    The right is an flock on the claim file, not the file's existence, because only a lock is
    released by the kernel when its owner dies (kill -9, OOM, a lost SLURM node on NFSv4, whose
    server drops the node's locks when its lease runs out). So no process ever judges a claim stale
    and deletes it: a dead owner's file is taken over by whichever process next gets its lock, and
    a file is unlinked only by the process holding its lock.

    On NFS, Linux emulates flock with POSIX locks, which belong to the process and which closing any
    fd on the file drops: hold one Claim per item per process, and do not open the claim file
    elsewhere while holding it.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """False while a live process holds the claim; never blocks."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this Claim")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            # Between our open and our lock its previous owner may have released it, unlinking the
            # file: our lock is then on a name-less inode that the next process would not see.
            if self._names(fd):
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Unlink while still locked: once unlocked, the file at the path may already be a new owner's."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._names(fd):
                os.unlink(self.path)
        finally:
            os.close(fd)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _names(self, fd: int) -> bool:
        """Whether our path still names the file open as `fd`."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def claims(pool: Pool, n: int) -> Iterator[int]:
    """Seeds this process should train now: missing, valid-less, and claimed by nobody alive."""
    for seed in pool.seeds(n):
        if read_entry(pool.entry_path(seed)) is not None:
            continue
        with Claim(pool.claim_path(f"seed-{seed:06d}")) as held:
            if held and read_entry(pool.entry_path(seed)) is None:  # another process may have just finished it
                yield seed


# -- building ----------------------------------------------------------------------------------
def build_original(pool: Pool, cfg: DictConfig, dm: FaceDataModule) -> None:
    """The original model, trained once on all training images, stored beside the pool."""
    while not pool.original_path.exists():
        with Claim(pool.claim_path("original")) as held:
            if not held:
                time.sleep(1.0)  # another process is training it; the pool needs it before scoring anyway
                continue
            if not pool.original_path.exists():
                model, seconds = fit(cfg, dm, "train", int(cfg.seed), validate=False)
                metrics = {"seconds": seconds, **evaluate(model.net, dm)}
                save_net(model.net, model.spec, dm.data_config(), pool.original_path, metrics=metrics, seed=int(cfg.seed))


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
    dm: FaceDataModule = instantiate(cfg.data)
    dm.setup()
    pool = Pool.for_config(cfg, dm)
    original = None
    if index == 0 and not pool.original_path.exists():
        t = time.perf_counter()
        build_original(pool, cfg, dm)
        original = time.perf_counter() - t
    trained = []
    for seed in claims(pool, int(cfg.pool.size)):
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


def run(cfg: DictConfig) -> dict[str, Any]:
    """`challenge pool`: train what is missing, reuse what exists; safe to run in many processes."""
    from challenge.tracking import finish, make_logger

    dm: FaceDataModule = instantiate(cfg.data)
    dm.setup()
    pool = Pool.for_config(cfg, dm)
    pool.create()
    n = int(cfg.pool.size)
    built = build(cfg, pool, n, default_workers(cfg))
    result = summary(pool, n) | {"trained_here": built["trained"], "shard": cfg.pool.shard, "processes": built["processes"]}
    logger = make_logger(cfg, group=f"pool-{pool.fingerprint}", name=f"pool-{pool.fingerprint}-shard{cfg.pool.shard}")
    if logger:
        for entry in pool.entries(n):
            if entry.seed in built["trained"]:
                logger.log_metrics({"seed": entry.seed, "seconds": entry.seconds, "retain_acc": entry.retain_acc, "forget_acc": entry.forget_acc, "test_acc": entry.test_acc}, step=entry.seed)
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
