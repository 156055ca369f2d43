"""challenge.checks: a wrong type or range in a numeric key is one `error:` line and exit 2, before any run.

The CLI cases fail before torch is imported (a fraction of a second each); the real configs' defaults
must pass, and the unit cases pin what is skipped (absent keys, ???, ${hydra:...}) and what is not.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from challenge.checks import check_values
from challenge.cli import CONF_DIR
from challenge.errors import ChallengeError
from tests.conftest import compose_config, run_cli

# (command words, override, words the one error line must hold besides `key=value`)
REFUSED = [
    (["pool"], "pool.size=abc", "is not an integer: set it to a whole number >= 1"),
    (["score", "x.py"], "scorer.budget_fraction=0", "is out of range: it must be > 0 and <= 10"),
    (["score", "x.py"], "scorer.budget_fraction=11", "is out of range: it must be > 0 and <= 10"),
    (["score", "x.py"], "scorer.threads=0", "is out of range: it must be >= 1"),
    (["score", "x.py"], "scorer.n_runs=2", "is out of range: it must be >= 3"),
    (["pool"], "pool.threads=1.5", "is not an integer: set it to a whole number >= 1"),
    (["pool"], "trainer.max_epochs=true", "is not an integer"),
    (["baseline"], "workers=0", "is out of range"),
    (["submit", "--team", "owls", "x.py"], "scorer.budget_seconds=-1", "is out of range: it must be > 0"),
]


@pytest.mark.parametrize(("words", "override", "says"), REFUSED, ids=[o for _, o, _ in REFUSED])
def test_cli_refuses_bad_value_in_one_line(words: list[str], override: str, says: str, tmp_path: Path) -> None:
    r = run_cli(*words, override, "logger=none", cwd=tmp_path, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert lines[0].startswith(f"error: {override} ") and says in lines[0], lines[0]
    assert "Traceback" not in r.stderr + r.stdout


def test_cli_names_the_interpolated_value(tmp_path: Path) -> None:
    """scorer.n_runs is ${pool.size}: the line says where the 2 came from."""
    r = run_cli("score", "x.py", "pool.size=2", "logger=none", cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == "error: scorer.n_runs=2 (from ${pool.size}) is out of range: it must be >= 3", r.stderr


@pytest.mark.parametrize(
    ("config", "overrides"),
    [("score", ["submission=x.py"]), ("pool", []), ("baseline", []), ("competition", []), ("train", []), ("preview", []), ("score", ["submission=x.py", "experiment=neurips2023"])],
)
def test_defaults_pass(config: str, overrides: list[str], tmp_path: Path) -> None:
    check_values(compose_config(config, overrides, tmp_path))


def test_valid_edge_values_pass(tmp_path: Path) -> None:
    ok = ["scorer.budget_fraction=10", "scorer.budget_seconds=5", "scorer.memory_mb=null", "scorer.threads=1", "scorer.n_bootstrap=0", "pool.size=3", "seed=0"]
    check_values(compose_config("score", ["submission=x.py", *ok], tmp_path))


def test_hydra_interpolation_is_skipped() -> None:
    """Composed as check_overrides does: paths.output_dir is still ${hydra:runtime.output_dir}."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("score", ["submission=x.py", "scorer.n_runs=${paths.output_dir}", "seed=${hydra:job.num}"])
    finally:
        GlobalHydra.instance().clear()
    check_values(cfg)


def _cfg(**values: object) -> DictConfig:
    """A config holding just these dotted keys (`_cfg(**{"pool.size": 3})`)."""
    cfg = OmegaConf.create({})
    for key, value in values.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def test_absent_and_missing_keys_are_skipped() -> None:
    check_values(_cfg(**{"pool.size": "???", "other.size": "abc"}))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("scorer.budget_fraction", True, "scorer.budget_fraction=true is not a number"),
        ("scorer.budget_seconds", float("nan"), "scorer.budget_seconds=nan is not a finite number"),
        ("pool.size", None, "pool.size=null is not an integer"),
        ("pool.size", "16", "pool.size='16' is not an integer"),  # a string, even of digits: the code would get a str
        ("pool.size", "${nope}", "pool.size=${nope} cannot be resolved"),
        ("data.num_workers", -1, "data.num_workers=-1 is out of range: it must be >= 0"),
    ],
)
def test_refused(key: str, value: object, message: str) -> None:
    with pytest.raises(ChallengeError, match="^" + re.escape(message)):
        check_values(_cfg(**{key: value}))


def test_int_is_fine_for_a_float_key() -> None:
    check_values(_cfg(**{"scorer.budget_fraction": 1, "scorer.startup_seconds": 600, "scorer.budget_seconds": None}))
