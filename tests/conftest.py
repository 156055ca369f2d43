"""Shared test setup: the real configs, composed with tiny overrides; caches and W&B kept hermetic."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from challenge.cli import CONF_DIR
from challenge.reports.tracking import register_resolvers
from tests.postgres import Server, Unavailable

REPO = Path(__file__).resolve().parent.parent
CHALLENGE = Path(sys.executable).parent / "challenge"

# The tiny preset (conf/experiment/tiny.yaml): 40 SynthFaces identities, 1 epoch, 3 pool models.
# logger=none comes last, so that a test can swap it (TINY[:-1]).
TINY = ["experiment=tiny", "logger=none"]


@pytest.fixture(autouse=True, scope="session")
def _hermetic(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test talks to W&B servers or writes to the user's cache."""
    os.environ["WANDB_MODE"] = "disabled"
    os.environ["WANDB_SILENT"] = "true"
    os.environ["CHALLENGE_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    register_resolvers()


def compose_config(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """The real config as a command would see it, with the run folder pinned to `output_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.root_dir = str(REPO)
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir)
    return cfg


def run_cli(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(CHALLENGE), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def postgres() -> Iterator[Server]:
    """One throwaway PostgreSQL server for the session (skipped, with the reason, where none can start)."""
    try:
        server = Server()
    except Unavailable as e:
        pytest.skip(f"no PostgreSQL server: {e}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both engines: a new SQLite file, or a new database on the session's server."""
    if request.param == "sqlite":
        return str(tmp_path / "competition.db")
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - selenium's type, imported lazily
    """One headless Chromium for the session, its profile in pytest's temporary folder (nothing left in /tmp)."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (Path(chromium).exists() and Path(driver_path).exists()):
        pytest.skip("chromium and chromedriver are not installed (`make system-deps` installs them where it may)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()
