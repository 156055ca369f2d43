"""The kit as a package: a wheel built from the checkout runs from any folder, configs and baselines inside."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO

MINE = """import torch


def unlearning(net, retain_loader, forget_loader, val_loader):
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    for batch in retain_loader:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(batch["image"]), batch["age_group"]).backward()
        optimizer.step()
"""


@pytest.mark.slow
def test_the_wheel_runs_pool_and_score_from_outside_the_checkout(tmp_path: Path) -> None:
    """`pip install` of the wheel into a clean venv (its dependencies borrowed from the dev venv, not
    the checkout), then `challenge pool` and `challenge score` in an empty folder."""
    dist, src = tmp_path / "dist", tmp_path / "src"  # built from a copy: setuptools writes build/ beside the sources
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".cache", "outputs", "multirun", "build", "*.egg-info", "__pycache__"
        ),
    )
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    wheel = next(dist.glob("challenge-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = Path(
        subprocess.check_output(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (site / "dev-deps.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )  # torch & co.; its .pth files (the editable kit) are not run
    r = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mine.py").write_text(MINE)
    env = {**os.environ, "CHALLENGE_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": ""}
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import challenge, challenge.kit as k; print(challenge.__file__); print(k.kit_path('conf'))",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where), where  # the wheel's copy, not the checkout
    challenge = str(venv / "bin" / "challenge")
    r = subprocess.run(
        [challenge, "pool", "experiment=tiny", "logger=none"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr
    assert "3/3 retrained models" in r.stdout
    r = subprocess.run(
        [challenge, "score", "mine.py", "experiment=tiny", "logger=none", "scorer.budget_seconds=60"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr
    assert "final score" in r.stdout and "sandbox     bubblewrap" in r.stdout or "isolation: none" in r.stderr
    assert (elsewhere / "outputs").is_dir()  # run folders land where the user is, not in site-packages
