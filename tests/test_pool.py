"""The reference pool: fingerprinted, atomic, resumable after kill -9, filled by several processes."""

from __future__ import annotations

import hashlib
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

from challenge.commands.pool import run as pool_command
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


@pytest.mark.slow  # about 50 s: a real build killed and resumed
def test_kill_9_mid_build_then_resume_ends_with_exactly_n_valid_entries(tmp_path: Path) -> None:
    env = {"CHALLENGE_CACHE_DIR": str(tmp_path)}
    args = [str(CHALLENGE), "pool", *POOL_TINY, "pool.size=4", f"hydra.run.dir={tmp_path}/run1"]
    proc = subprocess.Popen(
        args, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
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
    r = run_cli(
        "pool",
        "-m",
        "pool.shard=0,1",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *POOL_TINY,
        "pool.size=4",
        sweep,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    shards = [json.loads((tmp_path / "joblib" / str(i) / "pool.json").read_text()) for i in (0, 1)]
    trained = [s for shard in shards for s in shard["trained_here"]]
    assert sorted(trained) == list(range(1000, 1004))  # each seed exactly once across both processes
    assert shards[0]["fingerprint"] == shards[1]["fingerprint"]

    r = run_cli(
        "pool",
        "-m",
        "pool.shard=0",
        "hydra/launcher=submitit_local",
        *POOL_TINY,
        "pool.size=5",
        f"hydra.sweep.dir={tmp_path}/submitit",
        env=env,
    )
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
    harmless = [
        "data.num_workers=2",
        "pool.size=99",
        "pool.workers=7",
        "pool.originals=3",  # the retrained models do not depend on the originals
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=3",
        "trainer.enable_model_summary=true",
    ]
    assert _pool(tmp_path, [*POOL_TINY, *harmless]).fingerprint == base
    changes = [
        "trainer.max_epochs=2",
        "data.split.seed=1",
        "data.source.seed=1",
        "model.net.name=resnet10t",
        "seed=3",
        "+trainer.limit_train_batches=0.5",
        "+trainer.max_time=00:00:01:00",
        "trainer.precision=bf16-mixed",
        "trainer.deterministic=false",
        "+trainer.gradient_clip_val=1.0",
        "pool.threads=2",
        "data.eval_batch_size=64",
    ]
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
    separate caches: seed 1000's entry is bit-identical, because every model trains single-threaded.
    Alone it also trains a second original (pool.originals=2), with the next seed, into the same pool.
    The run alone is the command's function called here (what the CLI calls once Hydra has composed the
    config; its spawned workers are the same): a CLI process of its own would import the kit once more
    (about 10 s of a loaded 2-core machine), and the multirun below goes through the CLI anyway."""
    alone, sweep = tmp_path / "alone", tmp_path / "sweep"
    cfg = compose_config("pool", [*POOL_TINY, "pool.size=1", "pool.originals=2"], tmp_path / "run")
    cfg.paths.cache_dir = str(alone)
    assert pool_command(cfg)["processes"] == 2  # the original and seed 1000 side by side
    assert json.loads((tmp_path / "run" / "pool.json").read_text())["processes"] == 2
    r = run_cli(
        "pool",
        "-m",
        *POOL_TINY,
        "pool.size=2",
        "pool.shard=0,1",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={tmp_path}/multirun",
        env={"CHALLENGE_CACHE_DIR": str(sweep)},
    )
    assert r.returncode == 0, r.stderr
    a, b = (next((cache / "pools").glob("*/models/seed-001000.npz")) for cache in (alone, sweep))
    assert a.parent.parent.name == b.parent.parent.name  # one fingerprint
    first, second = read_entry(a), read_entry(b)
    assert first.confidences.tobytes() == second.confidences.tobytes()  # bit for bit (only the seconds differ)
    assert (first.retain_acc, first.forget_acc, first.test_acc) == (
        second.retain_acc,
        second.forget_acc,
        second.test_acc,
    )
    originals = [
        torch.load(cache / "pools" / a.parent.parent.name / "original.pt", weights_only=True)["state_dict"]
        for cache in (alone, sweep)
    ]
    assert all(torch.equal(originals[0][k], originals[1][k]) for k in originals[0])
    second = torch.load(a.parent.parent / "original-1.pt", weights_only=True)
    first_seed = torch.load(a.parent.parent / "original.pt", weights_only=True)["seed"]
    assert second["seed"] == first_seed + 1
    assert not all(torch.equal(originals[0][k], second["state_dict"][k]) for k in originals[0])


# -- the reference figures -----------------------------------------------------------------------
def test_an_entry_keeps_every_parts_figures_and_train_is_retain_and_forget_weighted(tmp_path: Path) -> None:
    from challenge.pool import make_entry

    pool = Pool(tmp_path, {"first_seed": 1000})
    metrics = {
        "retain": {"acc": 0.5, "confidence": 0.4, "n": 30},
        "forget": {"acc": 0.8, "confidence": 0.7, "n": 10},
        "test": {"acc": 0.25, "confidence": 0.3, "n": 8},
        "val": {"acc": 0.1, "confidence": 0.1, "n": 4},
    }
    pool.commit(make_entry(1000, 2.0, metrics, np.arange(4.0)))
    (entry,) = pool.entries(1)
    assert entry.metrics["train"] == {
        "acc": 0.575,
        "confidence": pytest.approx(0.475),
        "n": 40,
    }  # (30·0.5 + 10·0.8) / 40
    assert sorted(entry.metrics) == ["forget", "retain", "test", "train"]  # val is the participants' own
    assert entry.metrics["forget"] == metrics["forget"]


def test_a_pool_of_an_older_kit_is_read_and_its_missing_figures_named_in_one_line(tmp_path: Path) -> None:
    """An entry as the kit wrote it before `metrics` (same npz, same checksum rule) stays valid;
    the reference keeps the accuracies it has and names everything else, with the way to fix it."""
    from challenge.pool.build import format_summary, summary

    pool = Pool(tmp_path, {"first_seed": 1000})
    pool.create()
    conf = np.arange(5.0)
    for seed, acc in ((1000, 0.5), (1001, 0.7)):
        meta = json.dumps(
            {"seed": seed, "seconds": 1.0, "retain_acc": acc, "forget_acc": 0.25, "test_acc": 0.375}
        ).encode()
        checksum = hashlib.sha256(conf.tobytes() + meta).hexdigest().encode()
        pool.entry_path(seed).parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            pool.entry_path(seed),
            confidences=conf,
            meta=np.frombuffer(meta, np.uint8),
            checksum=np.frombuffer(checksum, np.uint8),
        )
    assert [e.metrics for e in pool.entries(2)] == [None, None]
    s = summary(pool, 2)
    ref = s["reference"]
    assert ref["retrained"]["retain"] == {"acc": 0.6, "confidence": None}
    assert (ref["retrained"]["forget"]["acc"], ref["retrained"]["test"]["acc"], ref["retrained"]["train"]["acc"]) == (
        0.25,
        0.375,
        None,
    )
    assert ref["original"]["test"] == {"acc": None, "confidence": None}  # no original.pt at all
    assert ref["missing"].startswith(
        f"the pool at {tmp_path} does not store original.train.acc, original.train.confidence,"
    )
    assert "retrained.train.acc, retrained.train.confidence, retrained.retain.confidence" in ref["missing"]
    assert "retrained.retain.acc" not in ref["missing"] and "\n" not in ref["missing"]
    lines = format_summary(s).splitlines()
    assert lines[4].split() == ["retrained", "—", "—", "0.600", "—", "0.250", "—", "0.375", "—"]
    assert lines[5] == ref["missing"] and len(lines) == 6


# -- packed builds (pool.pack = 2) --------------------------------------------------------------
PACKED = [*POOL_TINY, "pool.pack=2"]


@pytest.fixture(scope="module")
def packed_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[int, bytes]:
    """`challenge pool pool.pack=2 pool.size=3` alone (the original beside pack 1000-1001, then pack
    1002-1003, whole although the pool needs 1002 only): each seed's entry, as bytes of its outputs."""
    tmp = tmp_path_factory.mktemp("packed")
    r = run_cli("pool", *PACKED, "pool.size=3", f"hydra.run.dir={tmp}/run", env={"CHALLENGE_CACHE_DIR": str(tmp)})
    assert r.returncode == 0, r.stderr
    built = json.loads((tmp / "run" / "pool.json").read_text())
    assert built["processes"] == 2 and built["trained_here"] == [1000, 1001, 1002, 1003]
    return _outputs(next((tmp / "pools").glob("*/models")))


def _outputs(models: Path) -> dict[int, bytes]:
    out = {}
    for path in sorted(models.glob("seed-*.npz")):
        entry = read_entry(path)
        assert entry is not None
        out[entry.seed] = entry.confidences.tobytes() + json.dumps(entry.metrics, sort_keys=True).encode()
    return out


@pytest.mark.slow  # two real packed builds
def test_a_packed_seed_has_the_same_bits_alone_or_in_a_multirun_of_two_shards(
    packed_reference: dict[int, bytes], tmp_path: Path
) -> None:
    r = run_cli(
        "pool",
        "-m",
        *PACKED,
        "pool.size=4",
        "pool.shard=0,1",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={tmp_path}/multirun",
        env={"CHALLENGE_CACHE_DIR": str(tmp_path)},
    )
    assert r.returncode == 0, r.stderr
    shards = [json.loads((tmp_path / "multirun" / str(i) / "pool.json").read_text()) for i in (0, 1)]
    assert sorted(s for shard in shards for s in shard["trained_here"]) == [1000, 1001, 1002, 1003]  # each once
    assert all(len(shard["trained_here"]) in (0, 2, 4) for shard in shards)  # a pack is one process's
    assert _outputs(next((tmp_path / "pools").glob("*/models"))) == packed_reference


@pytest.mark.slow  # a packed build killed and resumed
def test_kill_9_of_a_packed_build_then_resume_gives_the_same_bits(
    packed_reference: dict[int, bytes], tmp_path: Path
) -> None:
    env = {"CHALLENGE_CACHE_DIR": str(tmp_path)}
    args = [str(CHALLENGE), "pool", *PACKED, "pool.size=3", "pool.workers=1", f"hydra.run.dir={tmp_path}/run1"]
    proc = subprocess.Popen(
        args, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    models = next_models_dir(tmp_path, proc)
    while not list(models.glob("seed-*.npz")):
        assert proc.poll() is None, "the pool finished before it could be killed"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    survivors = {p.name: p.stat().st_mtime_ns for p in models.glob("seed-*.npz")}
    assert 1 <= len(survivors) < 4
    r = run_cli("pool", *PACKED, "pool.size=3", f"hydra.run.dir={tmp_path}/run2", env=env)
    assert r.returncode == 0, r.stderr
    assert _outputs(models) == packed_reference
    assert {p.name: p.stat().st_mtime_ns for p in models.glob("seed-*.npz") if p.name in survivors} == survivors
