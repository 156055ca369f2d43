"""Baselines through the real scorer and sandbox, the leaderboard report, and `challenge baseline`.

The fast tests share one tiny pool (the same preset as tests/test_score.py, so a session running
both builds it once) and score every baseline once, two at a time, via the code `challenge
baseline` uses; the report is then opened in a real headless Chromium. The whole command, run
twice from the CLI, is the slow test.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from challenge.commands.baseline import Stages, baseline_files, score_all
from challenge.pool import Pool, build
from challenge.reports.leaderboard import (
    leaderboard_table,
    rank,
    row_from_result,
    write_html,
)
from challenge.scoring.scorer import KIT_BASELINES, budget_exempt, score_submission
from tests.conftest import TINY, compose_config, run_cli

# A generous budget: the tiny recipe's retrain (3 steps) is below what a baseline's own set-up costs.
SCORE = [*TINY, "scorer.budget_seconds=120", "scorer.n_bootstrap=20", "workers=2"]
METHODS = sorted(p.stem for p in KIT_BASELINES.glob("*.py"))


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    """Every baseline of the default list scored on the tiny pool: (run folder, name -> result)."""
    out = tmp_path_factory.mktemp("baselines")
    cfg = compose_config("baseline", SCORE, out)
    files = baseline_files(cfg)
    dm = instantiate(cfg.data)
    dm.setup()
    pool = Pool.for_config(cfg, dm)
    pool.create()
    build(cfg, pool, int(cfg.pool.size), 1)  # four tiny models: cheaper than spawning workers
    return out, score_all(OmegaConf.to_container(cfg, resolve=True), files, out, 2, Stages())


def test_the_default_list_is_every_file_in_baselines() -> None:
    cfg = compose_config("baseline", TINY, Path("/tmp"))
    assert sorted(cfg.baselines) == METHODS
    assert len(METHODS) >= 9


@pytest.mark.parametrize("name", METHODS)
def test_each_baseline_is_scored_through_the_sandbox(scored: tuple[Path, dict[str, dict]], name: str) -> None:
    out, results = scored
    result = results[name]
    assert result["status"] == "scored", result["message"]
    assert json.loads((out / name / "result.json").read_text())["status"] == "scored"
    samples = result["confidence_samples"]
    assert len(samples["unlearned"]) == min(4, result["score"]["n_examples"])
    assert all(len(u) == len(r) == 3 for u, r in zip(samples["unlearned"], samples["retrained"]))


def test_do_nothing_has_the_lowest_possible_forget_quality(scored: tuple[Path, dict[str, dict]]) -> None:
    _, results = scored
    f = {name: r["score"]["forget_quality"] for name, r in results.items()}
    assert f["do_nothing"] == 0.0  # identical runs: a point mass every retrained spread tells apart
    assert f["retrain"] > 0.0
    assert min(f.values()) == f["do_nothing"]


@pytest.mark.parametrize("name", METHODS)
def test_baselines_are_self_contained_and_cite_a_source(name: str) -> None:
    """A participant file may import torch and numpy only; its docstring says where the method comes from."""
    tree = ast.parse((KIT_BASELINES / f"{name}.py").read_text())
    imported = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"torch", "numpy", "copy", "math", "itertools"}, imported
    doc = ast.get_docstring(tree) or ""
    assert "Source:" in doc


def test_budget_exemption_only_for_the_kits_own_baselines(tmp_path: Path) -> None:
    assert budget_exempt(KIT_BASELINES / "retrain.py")
    assert not budget_exempt(KIT_BASELINES / "finetune.py")
    copy = tmp_path / "retrain.py"
    shutil.copyfile(KIT_BASELINES / "retrain.py", copy)
    assert not budget_exempt(copy)


def test_exempt_retrain_is_scored_past_the_budget_and_a_copy_is_not(scored: tuple[Path, dict[str, dict]], tmp_path: Path) -> None:
    """Runs are reused from the fixture's scoring, so only the verdict is at stake here."""
    cfg = compose_config("baseline", [*SCORE, "scorer.budget_seconds=0.01"], tmp_path)
    exempt = score_submission(cfg, KIT_BASELINES / "retrain.py", tmp_path / "exempt")
    assert exempt["status"] == "scored" and exempt["settings"]["budget_exempt"]
    copy = tmp_path / "my_retrain.py"
    copy.write_text((KIT_BASELINES / "retrain.py").read_text() + "\n# a participant's copy\n")
    assert score_submission(cfg, copy, tmp_path / "copy")["status"] == "timeout"


# -- the report ------------------------------------------------------------------------------------
def test_table_ranks_and_marks_unscored_and_exempt_rows(scored: tuple[Path, dict[str, dict]]) -> None:
    _, results = scored
    rows = rank([row_from_result(n, r) for n, r in results.items()] + [{"name": "broken", "status": "timeout"}])
    table = leaderboard_table(rows)
    assert [r["name"] for r in rows][-1] == "broken"
    finals = [r["final_score"] for r in rows[:-1]]
    assert finals == sorted(finals, reverse=True)
    assert all(name in table for name in [*METHODS, "broken"])
    assert "(exempt)" in next(line for line in table.splitlines() if " retrain " in line)


def test_html_escapes_names(tmp_path: Path) -> None:
    page = write_html("t", [{"name": "<script>x</script>", "status": "scored", "team": "a&b"}], {}, tmp_path / "r.html").read_text()
    assert "<script>x" not in page and "&lt;script&gt;" in page and "a&amp;b" in page


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201 - selenium's type, imported lazily
    chromium, driver_path = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (Path(chromium).exists() and Path(driver_path).exists()):
        pytest.skip("chromium and chromedriver are not installed (`make system-deps` installs them where it may)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def test_report_opens_in_chromium_with_every_row_and_plot(scored: tuple[Path, dict[str, dict]], browser, tmp_path: Path) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    _, results = scored
    rows = rank(row_from_result(n, r) for n, r in results.items())
    page = write_html("Baselines", rows, results, tmp_path / "report.html")
    browser.get(page.as_uri())
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    shown = [tr.get_attribute("data-name") for tr in browser.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr")]
    assert sorted(shown) == METHODS
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) == 1 + len(METHODS)  # the summary, then one figure per method
    assert all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0 for img in images)
    headings = {h.text for h in browser.find_elements(By.TAG_NAME, "h2")}
    assert headings == set(METHODS)


# -- the whole command -----------------------------------------------------------------------------
@pytest.mark.slow
def test_make_baseline_twice_second_run_reuses_everything(tmp_path: Path) -> None:
    env = {"CHALLENGE_CACHE_DIR": str(tmp_path / "cache")}
    args = ["baseline", *TINY, "scorer.budget_seconds=120", "scorer.n_bootstrap=20"]
    first = run_cli(*args, f"hydra.run.dir={tmp_path}/run1", env=env, timeout=1800)
    assert first.returncode == 0, first.stderr
    assert "s/run / budget" in first.stdout and "do_nothing" in first.stdout
    for name in METHODS:
        assert json.loads((tmp_path / "run1" / name / "result.json").read_text())["status"] == "scored"
    assert (tmp_path / "run1" / "report.html").stat().st_size > 10_000

    second = run_cli(*args, f"hydra.run.dir={tmp_path}/run2", env=env, timeout=600)
    assert second.returncode == 0, second.stderr
    stages = json.loads((tmp_path / "run2" / "timings.json").read_text())["stages"]
    assert stages["original"]["note"] == "reused" and "reused" in stages["pool"]["note"]
    assert all("result reused" in stages[name]["note"] for name in METHODS)
