"""The reference pool: fingerprinted, atomic, resumable after kill -9, filled by several processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from challenge.errors import ChallengeError
from challenge.pool import Pool, read_entry
from tests.conftest import CHALLENGE, TINY, compose_config, run_cli

POOL_TINY = [*TINY, "data.source.images_per_identity=5"]


def _pool(cache: Path, overrides: list[str]) -> Pool:
    cfg = compose_config("pool", overrides, cache / "out")
    cfg.paths.cache_dir = str(cache)
    dm = instantiate(cfg.data)
    dm.setup()
    return Pool.for_config(cfg, dm)


def test_kill_9_mid_build_then_resume_ends_with_exactly_n_valid_entries(tmp_path: Path) -> None:
    env = {"CHALLENGE_CACHE_DIR": str(tmp_path)}
    args = [str(CHALLENGE), "pool", *POOL_TINY, "pool.size=4", f"hydra.run.dir={tmp_path}/run1"]
    proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    models = next_models_dir(tmp_path, proc)
    while len(list(models.glob("seed-*.npz"))) < 1:
        assert proc.poll() is None, "the pool finished before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    survivors = {p.name: p.stat().st_mtime_ns for p in models.glob("seed-*.npz")}
    assert 1 <= len(survivors) < 4
    assert all(read_entry(models / name) is not None for name in survivors)  # nothing half-written

    r = run_cli("pool", *POOL_TINY, "pool.size=4", f"hydra.run.dir={tmp_path}/run2", env=env)
    assert r.returncode == 0, r.stderr
    entries = sorted(models.glob("seed-*.npz"))
    assert [p.name for p in entries] == [f"seed-{s:06d}.npz" for s in range(1000, 1004)]
    assert all(read_entry(p) is not None for p in entries)
    assert {p.name: p.stat().st_mtime_ns for p in entries if p.name in survivors} == survivors  # not retrained
    trained = json.loads((tmp_path / "run2" / "pool.json").read_text())["trained_here"]
    assert sorted(trained + [int(n[5:11]) for n in survivors]) == list(range(1000, 1004))


def next_models_dir(cache: Path, proc: subprocess.Popen) -> Path:
    while not list((cache / "pools").glob("*/models")):
        assert proc.poll() is None, "the pool process ended early"
        time.sleep(0.05)
    return next((cache / "pools").glob("*/models"))


@pytest.mark.slow
def test_joblib_and_submitit_local_fill_one_pool_without_training_a_seed_twice(tmp_path: Path) -> None:
    env = {"CHALLENGE_CACHE_DIR": str(tmp_path)}
    sweep = f"hydra.sweep.dir={tmp_path}/joblib"
    r = run_cli("pool", "-m", "pool.shard=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *POOL_TINY, "pool.size=4", sweep, env=env)
    assert r.returncode == 0, r.stderr
    shards = [json.loads((tmp_path / "joblib" / str(i) / "pool.json").read_text()) for i in (0, 1)]
    trained = [s for shard in shards for s in shard["trained_here"]]
    assert sorted(trained) == list(range(1000, 1004))  # each seed exactly once across both processes
    assert shards[0]["fingerprint"] == shards[1]["fingerprint"]

    r = run_cli("pool", "-m", "pool.shard=0", "hydra/launcher=submitit_local", *POOL_TINY, "pool.size=5", f"hydra.sweep.dir={tmp_path}/submitit", env=env)
    assert r.returncode == 0, r.stderr
    grown = json.loads((tmp_path / "submitit" / "0" / "pool.json").read_text())
    assert grown["trained_here"] == [1004] and grown["fingerprint"] == shards[0]["fingerprint"]
    assert grown["models"] == 5
    pool_dirs = list((tmp_path / "pools").iterdir())
    assert len(pool_dirs) == 1


def test_pool_of_another_configuration_is_refused_naming_the_difference(tmp_path: Path) -> None:
    built = _pool(tmp_path, POOL_TINY)
    built.create()
    other = _pool(tmp_path, [*POOL_TINY, "model.optimizer.lr=0.5"])
    impostor = Pool(built.root, other.config)  # e.g. a pool folder passed by hand
    with pytest.raises(ChallengeError, match=r"another configuration .*model\.optimizer\.lr"):
        impostor.check()
    assert other.fingerprint != built.fingerprint
    with pytest.raises(ChallengeError, match="challenge pool"):
        other.require(1)


def test_fingerprint_covers_every_key_but_the_documented_few(tmp_path: Path) -> None:
    base = _pool(tmp_path, POOL_TINY).fingerprint
    harmless = ["data.num_workers=2", "pool.size=99", "pool.workers=7", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=3",
                "trainer.enable_model_summary=true"]
    assert _pool(tmp_path, [*POOL_TINY, *harmless]).fingerprint == base
    changes = ["trainer.max_epochs=2", "data.split.seed=1", "data.source.seed=1", "model.net.name=resnet10t", "seed=3",
               "+trainer.limit_train_batches=0.5", "+trainer.max_time=00:00:01:00", "trainer.precision=bf16-mixed",
               "trainer.deterministic=false", "+trainer.gradient_clip_val=1.0", "pool.threads=2", "data.eval_batch_size=64"]
    for change in changes:
        assert _pool(tmp_path, [*POOL_TINY, change]).fingerprint != base, change


def test_a_damaged_entry_is_not_counted(tmp_path: Path) -> None:
    pool = _pool(tmp_path, POOL_TINY)
    pool.create()
    from challenge.pool import make_entry

    metrics = {p: {"acc": 0.5} for p in ("retain", "forget", "test")}
    pool.commit(make_entry(1000, 1.0, metrics, np.arange(5.0)))
    pool.commit(make_entry(1001, 1.0, metrics, np.arange(5.0)))
    assert [e.seed for e in pool.entries(2)] == [1000, 1001]
    path = pool.entry_path(1001)
    path.write_bytes(path.read_bytes()[:-20])
    assert [e.seed for e in pool.entries(2)] == [1000]


def test_the_same_seed_has_the_same_bits_however_the_pool_is_built(tmp_path: Path) -> None:
    """`challenge pool` alone (its own worker processes) and a joblib multirun of two shards, into
    separate caches: seed 1000's entry is bit-identical, because every model trains single-threaded."""
    alone, sweep = tmp_path / "alone", tmp_path / "sweep"
    r = run_cli("pool", *POOL_TINY, "pool.size=1", f"hydra.run.dir={tmp_path}/run", env={"CHALLENGE_CACHE_DIR": str(alone)})
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "run" / "pool.json").read_text())["processes"] == 2  # the original and seed 1000 side by side
    r = run_cli("pool", "-m", *POOL_TINY, "pool.size=2", "pool.shard=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                f"hydra.sweep.dir={tmp_path}/multirun", env={"CHALLENGE_CACHE_DIR": str(sweep)})
    assert r.returncode == 0, r.stderr
    a, b = (next((cache / "pools").glob("*/models/seed-001000.npz")) for cache in (alone, sweep))
    assert a.parent.parent.name == b.parent.parent.name  # one fingerprint
    first, second = read_entry(a), read_entry(b)
    assert first.confidences.tobytes() == second.confidences.tobytes()  # bit for bit (only the seconds differ)
    assert (first.retain_acc, first.forget_acc, first.test_acc) == (second.retain_acc, second.forget_acc, second.test_acc)
    originals = [torch.load(cache / "pools" / a.parent.parent.name / "original.pt", weights_only=True)["state_dict"] for cache in (alone, sweep)]
    assert all(torch.equal(originals[0][k], originals[1][k]) for k in originals[0])
