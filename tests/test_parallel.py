"""`workers: null` (pool.workers, and `workers` of `challenge baseline`) is this job's share of the machine.

The real configs are composed as the CLI composes them (`-m` is the override hydra.mode=MULTIRUN)
and installed as the job's HydraConfig, as Hydra does in every job it launches; then the count a
job would use is read. Hydra's basic launcher runs a multirun's jobs one after another, so each
gets every core; joblib's jobs run side by side and share them; a submitit job has its own CPUs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import challenge.cli
from challenge.parallel import job_workers

CORES = len(os.sched_getaffinity(0))
MULTIRUN = "hydra.mode=MULTIRUN"


@pytest.fixture(autouse=True)
def no_job_left() -> Iterator[None]:
    yield
    HydraConfig.instance().cfg = None  # the next test (or module) starts outside any job
    GlobalHydra.instance().clear()


def as_job(config: str, overrides: list[str]) -> DictConfig:
    """The composed config, installed as the running job's HydraConfig."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(challenge.cli.CONF_DIR), version_base="1.3"):
        cfg = compose(config, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.mark.parametrize(
    ("overrides", "want"),
    [
        ([], CORES),  # a plain run
        ([MULTIRUN], CORES),  # the basic launcher: one job at a time
        ([MULTIRUN, "hydra/launcher=basic"], CORES),
        ([MULTIRUN, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], max(1, CORES // 2)),
        ([MULTIRUN, "hydra/launcher=joblib", "hydra.launcher.n_jobs=1"], CORES),
        ([MULTIRUN, "hydra/launcher=joblib"], 1),  # joblib's default n_jobs=-1: a job per core
        ([MULTIRUN, "hydra/launcher=joblib", "hydra.launcher.n_jobs=-2"], CORES // max(1, CORES - 1)),
        ([MULTIRUN, "hydra/launcher=submitit_local"], 1),
        ([MULTIRUN, "hydra/launcher=submitit_slurm", "hydra.launcher.cpus_per_task=6"], 6),
        ([MULTIRUN, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "pool.workers=3"], 3),  # set: as given
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_pool_workers_null_is_the_jobs_share_of_the_cores(overrides: list[str], want: int) -> None:
    cfg = as_job("pool", overrides)
    assert cfg.hydra.mode is None or cfg.hydra.mode.name == ("MULTIRUN" if MULTIRUN in overrides else "RUN")
    assert job_workers(cfg.pool.workers) == want


@pytest.mark.parametrize(
    ("overrides", "want"),
    [
        # one job of `-m data.split.seed=0,1,2`: the splits one after another, each on every core
        ([MULTIRUN, "data.split.seed=1"], CORES),
        ([MULTIRUN, "data.split.seed=1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], max(1, CORES // 2)),
        ([MULTIRUN, "workers=5"], 5),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_baseline_workers_null_is_the_jobs_share_of_the_cores(overrides: list[str], want: int) -> None:
    """`challenge baseline` builds its pool and runs its scorings with the same count."""
    cfg = as_job("baseline", overrides)
    assert cfg.workers == (5 if "workers=5" in overrides else None)
    assert job_workers(cfg.workers) == want


def test_outside_any_hydra_job_null_is_every_core() -> None:
    assert not HydraConfig.initialized()
    assert (job_workers(None), job_workers(2)) == (CORES, 2)
