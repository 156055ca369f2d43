"""challenge.checks: a wrong type or range in a numeric key is one `error:` line and exit 2, before any run.

The CLI cases fail before torch is imported (a fraction of a second each); the real configs' defaults
must pass, and the unit cases pin what is skipped (absent keys, ???, ${hydra:...}) and what is not.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from challenge.checks import RULES, check_values
from challenge.cli import CONF_DIR
from challenge.errors import ChallengeError
from challenge.scoring.settings import Settings
from tests.conftest import compose_config, run_cli

# (command words, override, words the one error line must hold besides `key=value`)
REFUSED = [
    (["pool"], "pool.size=abc", "is not an integer: set it to a whole number >= 1"),
    (["score", "x.py"], "scorer.budget_fraction=0", "is out of range: it must be > 0 and <= 10"),
    (["score", "x.py"], "scorer.budget_fraction=11", "is out of range: it must be > 0 and <= 10"),
    (["score", "x.py"], "scorer.threads=0", "is out of range: it must be >= 1"),
    (["score", "x.py"], "scorer.n_runs=2", "is out of range: it must be >= 3"),
    (["pool"], "pool.threads=1.5", "is not an integer: set it to a whole number >= 1"),
    (["pool"], "pool.collateral=-1", "is out of range: it must be >= 0"),
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
    assert (
        r.returncode == 2
        and r.stderr.strip() == "error: scorer.n_runs=2 (from ${pool.size}) is out of range: it must be >= 3"
    ), r.stderr


def refusal(cfg: DictConfig) -> str:
    """The line check_values refuses `cfg` with."""
    with pytest.raises(ChallengeError) as e:
        check_values(cfg)
    return str(e.value)


def with_value(cfg: DictConfig, key: str, value: object) -> DictConfig:
    changed = copy.deepcopy(cfg)
    OmegaConf.update(changed, key, value)
    return changed


@pytest.mark.parametrize(
    ("config", "overrides", "among"),
    [
        ("score", ["submission=x.py"], "scorer.n_runs"),
        ("pool", [], "pool.size"),
        ("baseline", [], "workers"),
        ("competition", [], "scorer.budget_fraction"),
        ("train", [], "trainer.max_epochs"),
        ("preview", [], "data.batch_size"),
        ("score", ["submission=x.py", "experiment=neurips2023"], "scorer.threads"),
    ],
)
def test_defaults_pass_and_every_key_of_the_config_is_checked(
    config: str, overrides: list[str], among: str, tmp_path: Path
) -> None:
    """The defaults pass; each rule's key that the config holds, set to a word, is refused by name."""
    cfg = compose_config(config, overrides, tmp_path)
    check_values(cfg)
    absent = object()
    numeric = {k: r for k, r in {**RULES, **Settings.rules()}.items() if r.kind in (int, float)}
    present = [
        key for key in numeric if OmegaConf.select(cfg, key, default=absent, throw_on_missing=False) is not absent
    ]
    assert among in present
    for key in present:
        line = refusal(with_value(cfg, key, "abc"))
        assert re.fullmatch(re.escape(f"{key}=abc is not ") + "(an integer|a number): set it to .*", line), line


# Each edge value that passes, and its neighbour just outside, refused with the exact line.
EDGES = [
    ("scorer.budget_fraction", 10, 10.5, "scorer.budget_fraction=10.5 is out of range: it must be > 0 and <= 10"),
    ("scorer.budget_seconds", 5, 0, "scorer.budget_seconds=0 is out of range: it must be > 0"),
    ("scorer.memory_mb", None, 0, "scorer.memory_mb=0 is out of range: it must be >= 1"),
    ("scorer.threads", 1, None, "scorer.threads=null is not an integer: set it to a whole number >= 1"),
    ("scorer.n_bootstrap", 0, -1, "scorer.n_bootstrap=-1 is out of range: it must be >= 0"),
    ("pool.size", 3, 2, "scorer.n_runs=2 (from ${pool.size}) is out of range: it must be >= 3"),
    ("seed", 0, -1, "seed=-1 is out of range: it must be >= 0"),
    ("pool.pack", 1, 0, "pool.pack=0 is out of range: it must be >= 1"),
]


def test_valid_edge_values_pass_and_their_neighbours_do_not(tmp_path: Path) -> None:
    edges = [f"{key}={'null' if ok is None else ok}" for key, ok, _, _ in EDGES]
    cfg = compose_config("score", ["submission=x.py", *edges], tmp_path)
    check_values(cfg)
    for key, _, bad, message in EDGES:
        assert refusal(with_value(cfg, key, bad)) == message


def test_hydra_interpolation_is_skipped_and_the_keys_after_it_are_checked() -> None:
    """Composed as check_overrides does: paths.output_dir is still ${hydra:runtime.output_dir}."""
    hydra_only = ["submission=x.py", "scorer.n_runs=${paths.output_dir}", "seed=${hydra:job.num}"]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg, later_bad = compose("score", hydra_only), compose("score", [*hydra_only, "scorer.threads=0"])
    finally:
        GlobalHydra.instance().clear()
    check_values(cfg)
    # scorer.n_runs, checked before scorer.threads, was skipped: the line names the one after it
    assert refusal(later_bad) == "scorer.threads=0 is out of range: it must be >= 1"


def _cfg(**values: object) -> DictConfig:
    """A config holding just these dotted keys (`_cfg(**{"pool.size": 3})`)."""
    cfg = OmegaConf.create({})
    for key, value in values.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def test_absent_and_missing_keys_are_skipped() -> None:
    check_values(_cfg(**{"pool.size": "???", "other.size": "abc"}))  # other.size: no rule of the kit's
    skipped_then_bad = _cfg(**{"pool.size": "???", "scorer.threads": 0})
    assert refusal(skipped_then_bad) == "scorer.threads=0 is out of range: it must be >= 1"
    assert refusal(_cfg(**{"pool.size": "abc"})) == "pool.size=abc is not an integer: set it to a whole number >= 1"


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


def test_int_is_fine_for_a_float_key_but_a_float_is_not_for_an_int_key() -> None:
    check_values(_cfg(**{"scorer.budget_fraction": 1, "scorer.startup_seconds": 600, "scorer.budget_seconds": None}))
    line = refusal(_cfg(**{"scorer.threads": 1.0}))
    assert line == "scorer.threads=1.0 is not an integer: set it to a whole number >= 1"


# -- the scorer's schema: challenge.scoring.settings.Settings holds each default, type and range once -------------
SCORER_YAML = CONF_DIR / "scorer" / "default.yaml"


def test_the_yaml_holds_the_schemas_keys_and_defaults() -> None:
    """conf/scorer/default.yaml documents the scorer's values; Settings defines them: the two never drift apart."""
    from dataclasses import fields

    from challenge.scoring.settings import APART, Settings

    yaml = OmegaConf.to_container(OmegaConf.load(SCORER_YAML), resolve=False)
    read = {f.metadata["key"] or f"scorer.{f.name}": f for f in fields(Settings) if "rule" in f.metadata}
    assert {f"scorer.{k}" for k in yaml} == {k for k in [*read, *APART] if k.startswith("scorer.")}
    for key, f in read.items():
        if not key.startswith("scorer."):
            continue
        written = yaml[key.removeprefix("scorer.")]
        expected = f"${{{f.metadata['follows']}}}" if f.metadata["follows"] else f.default
        expected = list(expected) if isinstance(expected, tuple) else expected  # YAML has lists, Settings tuples
        assert written == expected and type(written) in (type(expected), int), (key, written, expected)
    assert {k: yaml[k.removeprefix("scorer.")] for k in APART} == {k: default for k, (default, _) in APART.items()}


def test_the_sandboxs_limits_default_to_the_scorers() -> None:
    from challenge.scoring.sandbox.types import Limits

    yaml = OmegaConf.load(SCORER_YAML)
    expected = Limits(yaml.memory_mb, yaml.file_size_mb, yaml.log_cap_bytes, yaml.max_processes, yaml.scratch_mb)
    assert Settings.default_limits() == expected
    assert Settings.default_limits(max_processes=None).max_processes is None
    assert Settings.default_limits(scratch_mb=7).memory_mb == Settings.default("memory_mb") == 8192


SCORER_REFUSED = [
    (
        "scorer.max_processes=abc",
        "error: scorer.max_processes=abc is not an integer: set it to a whole number >= 4 or null",
    ),
    ("scorer.max_processes=3", "error: scorer.max_processes=3 is out of range: it must be >= 4"),
    ("scorer.scratch_mb=2.5", "error: scorer.scratch_mb=2.5 is not an integer: set it to a whole number >= 1 or null"),
    ("scorer.threads=null", "error: scorer.threads=null is not an integer: set it to a whole number >= 1"),
    ("scorer.budget_cap=0.5", "error: scorer.budget_cap=0.5 is out of range: it must be >= 1"),
    ("scorer.isolation=bwarp", "error: scorer.isolation=bwarp is not one of auto, bwrap, none"),
    (
        "scorer.device=gpu",
        "error: scorer.device=gpu is not one of auto, cpu, cuda: set it to auto (CUDA when present) or cpu",
    ),
    ("scorer.fresh=maybe", "error: scorer.fresh=maybe is not true or false"),
    ("data.eval_batch_size=0", "error: data.eval_batch_size=0 is out of range: it must be >= 1"),
]


@pytest.mark.parametrize(("override", "line"), SCORER_REFUSED, ids=[o for o, _ in SCORER_REFUSED])
def test_the_console_script_refuses_a_bad_scorer_value_in_one_line(override: str, line: str, tmp_path: Path) -> None:
    repo = CONF_DIR.parent
    template = str(repo / "submissions" / "template.py")
    r = run_cli("score", template, override, "experiment=tiny", "logger=none", cwd=tmp_path, timeout=120)
    assert (r.returncode, r.stderr.splitlines()) == (2, [line]), r.stderr
    assert not any(tmp_path.iterdir())  # refused before any run folder


def test_from_config_refuses_in_the_same_words_and_reads_what_is_left_out(tmp_path: Path) -> None:
    """The scorer's own path (score_submission, the competition worker) reads the config through the same rules."""
    from omegaconf import open_dict

    from challenge.scoring.settings import Settings

    cfg = compose_config("score", ["submission=x.py", "experiment=tiny", "device=cpu"], tmp_path)
    s = Settings.from_config(cfg)
    assert (s.n_runs, s.budget_cap, type(s.budget_cap), s.max_processes, s.device) == (3, 3.0, float, 64, "cpu")
    with open_dict(cfg):
        del cfg.scorer.max_processes  # a config written before the key: the schema's default
        cfg.scorer.scratch_mb = None
    assert (Settings.from_config(cfg).max_processes, Settings.from_config(cfg).scratch_mb) == (64, None)
    cfg.pool.size = 2
    interpolated = r"^scorer\.n_runs=2 \(from \$\{pool\.size\}\) is out of range: it must be >= 3$"
    with pytest.raises(ChallengeError, match=interpolated):
        Settings.from_config(cfg)
    cfg.pool.size, cfg.scorer.budget_seconds = 3, "5"
    with pytest.raises(ChallengeError, match=r"^scorer\.budget_seconds='5' is not a number: set it to a number > 0 or"):
        Settings.from_config(cfg)


def test_the_splits_and_tunes_own_checks_speak_the_same_form() -> None:
    from challenge.commands.tune import check_tune
    from challenge.data.splits import SplitSpec

    with pytest.raises(ChallengeError, match=r"^data\.split\.val_fraction=x is not a number: set it to a number >= 0"):
        SplitSpec(val_fraction="x")  # type: ignore[arg-type]
    with pytest.raises(ChallengeError, match=r"^data\.split\.forget_in_holdout=null is not true or false$"):
        SplitSpec(forget_in_holdout=None)  # type: ignore[arg-type]
    with pytest.raises(ChallengeError, match=r"^data\.split\.val_fraction=0.5 \+ data\.split\.test_fraction=0.6 must"):
        SplitSpec(val_fraction=0.5, test_fraction=0.6)
    assert SplitSpec(forget_fraction=5.0, forget_identities=3).forget_identities == 3  # a count: no fraction
    tune = OmegaConf.create({"tune": {"split_seed": 1, "evaluation_seed": 0, "objective": 7}})
    with pytest.raises(ChallengeError, match=r"^tune\.objective=7 is not one of final_score, forget_quality$"):
        check_tune(tune)
