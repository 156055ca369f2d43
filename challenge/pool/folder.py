"""The reference pool's folder: N retrained models' outputs, keyed by a fingerprint of their recipe.

Scoring compares unlearned models with these retrained ones, so a pool must never need to be
rebuilt and never be reused for another recipe: it lives under the cache in a folder named by a
fingerprint of everything that changes its bits, and every entry is written atomically with a
checksum, so that a damaged file is seen as missing (and retrained), never read.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

import challenge
from challenge.data.dataset import FaceData
from challenge.data.scenarios import check_wired
from challenge.errors import ChallengeError
from challenge.files import content_hash, write_atomic
from challenge.scoring.collateral import PARTS as COLLATERAL_PARTS
from challenge.scoring.collateral import sample_size

# The only keys left out of the fingerprint: they cannot change a trained model's bits. Everything
# else of data/model/trainer is in, so a changed recipe never silently reuses a pool trained otherwise.
NOT_OUTPUT = {
    "data": {
        "num_workers": "loader processes yield the same batches in the same order",
        "cache_dir": "where the data is kept, not what it is",
        "resident": "the same batches from device tensors or from a DataLoader (tests/test_resident.py)",
        "forget": "the scenario is keyed on its own, as `forget`, and left out for identities (earlier pools')",
    },
    "trainer": {
        "enable_progress_bar": "display",
        "enable_model_summary": "display",
        "log_every_n_steps": "logging",
        "default_root_dir": "where logs go",
        "enable_checkpointing": "the kit saves nets itself",
        "num_sanity_val_steps": "the pool trains without validation",
        "accelerator": "replaced by the device type it resolves to",
    },
}


def fingerprint_config(cfg: DictConfig, dm: FaceData) -> dict[str, Any]:
    """Everything that changes the pool's bits: data content, split, model, recipe, device, threads, versions."""

    def kept(group: str) -> dict[str, Any]:
        """Resolved key by key, so that a left-out key (e.g. a run folder of Hydra's) is never resolved."""
        node, out = cfg[group], {}
        for k in node:
            if k not in NOT_OUTPUT.get(group, {}):
                v = node[k]
                out[k] = OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
        return out

    data = kept("data")
    data["source"] = dm.data_dir.name  # type + fields + folder content, as the data cache keys it
    device = device_type(cfg)
    # Pools evaluated their models on the CPU until the kit evaluated on the training device: a pool
    # trained elsewhere gets a key of its own, so that it is rebuilt, never mixed with the old outputs.
    evaluated_on = {} if device == "cpu" else {"evaluated_on": device}
    check_wired(cfg.get("forget"), dm.forget)
    scenario = dm.forget.key()  # None for identities, so that their pools keep the fingerprints of earlier kits
    # Models trained M at a time (challenge.training.pack) run other kernels: their pools are other pools. Left out
    # at 1, the unpacked path, so that every pool built before the key existed keeps its fingerprint.
    pack = int(cfg.pool.get("pack", 1))
    collateral = collateral_size(cfg, dm)  # outputs on samples of retain and test (challenge.scoring.collateral)
    return {
        **({"collateral": collateral} if collateral else {}),
        **evaluated_on,
        **({"forget": scenario} if scenario else {}),
        **({"pack": pack} if pack != 1 else {}),
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


def collateral_size(cfg: DictConfig, dm: FaceData) -> int:
    """Images of retain and of test whose outputs each entry keeps: `pool.collateral`, null = the forget set's size."""
    return sample_size(cfg.pool.get("collateral", 0), len(dm.dataset("forget")))


def pool_models(cfg: DictConfig) -> int:
    """Models a pool trains: `pool.size` for reference, and as many again when `pool.ceiling` is on.

    The second half (seeds first_seed + size ...) is never the reference: it plays a perfect
    method, retraining itself, so that a score can be read against what retraining reaches at the
    same N and K (the ceiling) rather than against 1.0, which no method reaches at small N.
    """
    size = int(cfg.pool.size)
    return 2 * size if cfg.pool.get("ceiling", False) else size


def device_type(cfg: DictConfig) -> str:
    """What `trainer.accelerator` (the config's `device`) resolves to on this machine, as Lightning picks it:
    where the pool's models train and are evaluated; the judge evaluates on scorer.device, the same `device`."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator not in ("auto", "gpu"):
        return accelerator
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if accelerator == "auto" and torch.backends.mps.is_available() else "cpu"


def fingerprint(config: dict[str, Any]) -> str:
    return content_hash(config)


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
    # {part: {"acc", "confidence", "n"}} for train/retain/forget/test; None in entries written before
    # the kit stored them (their checksum covers the metadata as it was, so they stay readable).
    metrics: dict[str, dict[str, float]] | None = None
    # {part: logit-scaled confidences} on the collateral sample of retain and of test (pool.collateral); None when off
    collateral: dict[str, np.ndarray] | None = None


class Pool:
    """A folder of entries `models/seed-XXXXXX.npz`, the original model, and `pool.json`."""

    def __init__(self, root: Path, config: dict[str, Any]):
        self.root, self.config, self.fingerprint = root, config, fingerprint(config)

    @classmethod
    def for_config(cls, cfg: DictConfig, dm: FaceData) -> "Pool":
        config = fingerprint_config(cfg, dm)
        return cls(Path(cfg.paths.cache_dir) / "pools" / fingerprint(config), config)

    # -- layout ---------------------------------------------------------------------------
    @property
    def original_path(self) -> Path:
        return self.original_of(0)

    def original_of(self, s: int) -> Path:
        """Original model s (pool.originals): trained with seed `seed` + s on all training images. The retrained
        models do not depend on the originals, so one pool serves any number of them."""
        return self.root / ("original.pt" if s == 0 else f"original-{s}.pt")

    @property
    def clean_path(self) -> Path:
        """A corrective scenario's clean model: the original's recipe and seed on the training images as they truly
        are (challenge.data.dataset.FaceData.as_clean), for the figures corrective unlearning is measured against."""
        return self.root / "clean.pt"

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
            raise ChallengeError(
                f"no reference pool at {self.root}: build it with `challenge pool` and the same data/model overrides"
            )
        stored = json.loads(manifest.read_text())
        if stored["fingerprint"] != self.fingerprint:
            diff = sorted(_diff_keys(stored["config"], self.config))
            raise ChallengeError(
                f"the pool at {self.root} was built for another configuration (fingerprint {stored['fingerprint']}, "
                f"expected {self.fingerprint}; differs in {', '.join(diff) or 'kit internals'}): build a pool for "
                "this one with `challenge pool`"
            )

    def entries(self, n: int | None = None, start: int = 0) -> list[PoolEntry]:
        """Valid entries in seed order (n of them from the start-th seed); a damaged file is skipped (and will be
        retrained).
        """
        count = n if n is not None else self.size_on_disk()
        out = []
        for seed in self.seeds(start + count)[start:]:
            entry = read_entry(self.entry_path(seed))
            if entry is not None:
                out.append(entry)
        return out

    def seeds(self, n: int) -> list[int]:
        return [int(self.config["first_seed"]) + i for i in range(n)]

    def packs(self, n: int) -> list[list[int]]:
        """The seeds trained together (pool.pack at a time), grouped by index whatever n: pack j is seeds
        first_seed + j*M ... + (j+1)*M - 1, all M of them even past n, so that a seed's bits never depend
        on the pool's size, the shard or the process that trained it."""
        m = int(self.config.get("pack", 1))
        return [self.seeds(j + m)[j:] for j in range(0, n, m)]

    def size_on_disk(self) -> int:
        models = self.root / "models"
        return len(list(models.glob("seed-*.npz"))) if models.exists() else 0

    def require(self, n: int, originals: int = 1) -> list[PoolEntry]:
        """The first n entries, or a message saying how to build them."""
        self.check()
        if not self.original_path.exists():
            raise ChallengeError(f"the pool at {self.root} has no original model yet: run `challenge pool` to build it")
        have = sum(self.original_of(s).exists() for s in range(originals))
        if have < originals:
            raise ChallengeError(
                f"the pool at {self.root} has {have} of the {originals} original models pool.originals={originals} "
                f"asks for: run `challenge pool pool.originals={originals}` to train the others"
            )
        entries = self.entries(n)
        if len(entries) < n:
            raise ChallengeError(
                f"the pool has {len(entries)} of the {n} retrained models needed: run `challenge pool pool.size={n}`"
            )
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
        write_atomic(manifest, json.dumps({"fingerprint": self.fingerprint, "config": self.config}, indent=2).encode())

    def commit(self, entry: PoolEntry) -> None:
        buf = io.BytesIO()
        meta = _meta(entry)
        extra = {f"collateral_{part}": conf for part, conf in (entry.collateral or {}).items()}
        np.savez(
            buf,
            **extra,
            confidences=entry.confidences,
            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            checksum=np.frombuffer(entry.checksum.encode(), dtype=np.uint8),
        )
        write_atomic(self.entry_path(entry.seed), buf.getvalue())


def read_entry(path: Path) -> PoolEntry | None:
    """None for a missing or damaged entry: the checksum covers the outputs and the metrics."""
    try:
        with np.load(path) as z:
            conf, meta_bytes, checksum = z["confidences"], z["meta"].tobytes(), z["checksum"].tobytes().decode()
            extra = {part: z[f"collateral_{part}"] for part in COLLATERAL_PARTS if f"collateral_{part}" in z.files}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    if _checksum(conf, meta_bytes, extra) != checksum:
        return None
    return PoolEntry(confidences=conf, checksum=checksum, collateral=extra or None, **json.loads(meta_bytes))


def make_entry(
    seed: int, seconds: float, metrics: dict, confidences: np.ndarray, collateral: dict[str, np.ndarray] | None = None
) -> PoolEntry:
    """An entry with the per-part figures of `metrics` (challenge.training.recipe.evaluate's form),
    train added from retain and forget, so that the scorer reports them without evaluating N models."""
    kept = {
        p: {k: m[k] for k in FIGURES if k in m}
        for p, m in with_train(metrics).items()
        if p in METRIC_PARTS + SCENARIO_PARTS
    }
    conf = np.ascontiguousarray(confidences, dtype=np.float64)
    entry = PoolEntry(
        seed=seed,
        seconds=seconds,
        retain_acc=metrics["retain"]["acc"],
        forget_acc=metrics["forget"]["acc"],
        test_acc=metrics["test"]["acc"],
        confidences=conf,
        checksum="",
        metrics=kept,
        collateral={p: np.ascontiguousarray(c, dtype=np.float64) for p, c in (collateral or {}).items()} or None,
    )
    return replace(entry, checksum=_checksum(conf, json.dumps(_meta(entry)).encode(), entry.collateral))


METRIC_PARTS = ("train", "retain", "forget", "test")  # what an entry keeps; val is the participants' own
SCENARIO_PARTS = ("focus",)  # kept too where the scenario has them (challenge.scoring.scenario), not in the table
FIGURES = ("acc", "confidence", "n")


def with_train(metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Adds `train` from retain and forget: they partition it, so its figures are their n-weighted
    means, and no model is evaluated a third time. Unchanged without both parts' sizes."""
    r, f = metrics.get("retain") or {}, metrics.get("forget") or {}
    if "train" in metrics or "n" not in r or "n" not in f:
        return metrics
    n = int(r["n"]) + int(f["n"])
    train = {k: (r[k] * r["n"] + f[k] * f["n"]) / n for k in ("acc", "confidence") if k in r and k in f}
    return {"train": {**train, "n": n}, **metrics}


def _meta(entry: PoolEntry) -> dict[str, Any]:
    """What the checksum covers besides the confidences; an entry without metrics keeps the old form."""
    meta: dict[str, Any] = {k: getattr(entry, k) for k in ("seed", "seconds", "retain_acc", "forget_acc", "test_acc")}
    if entry.metrics is not None:
        meta["metrics"] = entry.metrics
    return meta


def _checksum(conf: np.ndarray, meta: bytes, collateral: dict[str, np.ndarray] | None = None) -> str:
    """Over the confidences, the metadata and the collateral outputs (an entry without them: its old checksum)."""
    h = hashlib.sha256(np.ascontiguousarray(conf, dtype=np.float64).tobytes() + meta)
    for part in sorted(collateral or {}):
        h.update(part.encode() + np.ascontiguousarray(collateral[part], dtype=np.float64).tobytes())
    return h.hexdigest()


def _diff_keys(a: Any, b: Any, prefix: str = "") -> set[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: set[str] = set()
        for k in a.keys() | b.keys():
            out |= _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return set() if a == b else {prefix.rstrip(".")}
