"""Baselines through the real scorer and sandbox, the leaderboard report, and `challenge baseline`.

The fast tests share one tiny pool (the same preset as tests/test_score.py, so a session running
both builds it once) and score the baselines `make baseline` scores (the default set) and retrain
once, two at a time, via the code `challenge baseline` uses (its two scorings at a time in threads
of this process, which has the kit imported, instead of two spawned workers that import it again:
challenge.parallel's spawned workers are tested by tests/test_pool.py's bit-identity test); the
report is then opened in a real headless Chromium. The other baselines of `baselines=all` run in
this process as a run's process runs them, with the judge's strict load of what they return (each
scoring is a child that imports torch and timm: about 10 CPU seconds); their scorings through the
sandbox are slow tests. The whole command, run twice from the CLI, is the slow test too.
"""

from __future__ import annotations

import ast
import base64
import copy
import io
import json
import pickle
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from challenge.cli import CONF_DIR, main
from challenge.commands import baseline as baseline_command
from challenge.commands.baseline import Stages, baseline_files, score_all
from challenge.pool import Pool, build, summary
from challenge.pool.build import format_summary
from challenge.pool.folder import pool_models
from challenge.reports.leaderboard import leaderboard_table, rank, write_html
from challenge.scoring.compare import (
    Confidences,
    compare_kept,
    draw_key,
    read_confidences,
    write_confidences,
)
from challenge.scoring.context import KIT_BASELINES, budget_exempt
from challenge.scoring.evaluation import load_weights
from challenge.scoring.metric import forget_score, per_example_epsilon
from challenge.scoring.protocol import DATA, WEIGHTS, run_name
from challenge.scoring.result import PoolInfo, Result
from challenge.scoring.row import LeaderboardRow
from challenge.scoring.run import load_parts, loaders, save, seed_everything
from challenge.scoring.scorer import score_submission
from challenge.scoring.stage import staged_data
from challenge.scoring.submission import compile_submission, load_submission
from challenge.training.net import accuracy, load_net, mean_confidence, predict_logits
from tests.conftest import TINY, compose_config, run_cli

METHODS = sorted(p.stem for p in KIT_BASELINES.glob("*.py"))
# Scored through the sandbox in `make test`: what `make baseline` scores, and retrain (budget-exempt; the ceiling's
# method). The rest of baselines=all run in this process there (test_the_other_baselines_run_...), and are scored
# through the sandbox in `make test-all`.
SCORED = sorted({*OmegaConf.load(CONF_DIR / "baselines" / "default.yaml").methods, "retrain"})
REST = [m for m in METHODS if m not in SCORED]
# A generous budget: the tiny recipe's retrain (3 steps) is below what a baseline's own set-up costs.
SCORE = [
    *TINY,
    "scorer.budget_seconds=120",
    "scorer.n_bootstrap=20",
    "workers=2",
    "pool.ceiling=true",
]


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Result]]:
    """The SCORED baselines scored on the tiny pool: (run folder, name -> result)."""
    out = tmp_path_factory.mktemp("baselines")
    cfg = compose_config("baseline", SCORE, out)
    dm = instantiate(cfg.data)
    dm.setup()
    pool = Pool.for_config(cfg, dm)
    pool.create()
    build(cfg, pool, pool_models(cfg), 1)  # seven tiny models: cheaper than spawning workers
    return out, _score_all(out, SCORED)


@pytest.fixture(scope="module")
def scored_all(scored: tuple[Path, dict[str, Result]]) -> tuple[Path, dict[str, Result]]:
    """The REST scored as well, on the same pool into the same run folder (slow: a child each)."""
    out, results = scored
    return out, {**results, **_score_all(out, REST)}


def _score_all(out: Path, names: list[str]) -> dict[str, Result]:
    """`challenge baseline`'s scoring stage (commands.baseline.score_all) for `names`, two at a time."""
    cfg = compose_config("baseline", [*SCORE, f"baselines.methods=[{','.join(names)}]"], out)
    with pytest.MonkeyPatch.context() as patch:  # spawned workers would import the kit again: 9 CPU s each
        patch.setattr(baseline_command, "run_parallel", _in_threads)
        return score_all(OmegaConf.to_container(cfg, resolve=True), baseline_files(cfg), out, 2, Stages())


def _in_threads(fn: Callable, jobs: list[tuple], workers: int, on_result: Callable | None = None) -> list[Any]:
    """challenge.parallel.run_parallel's contract (fn(*job) for every job, `workers` at a time, in the order
    submitted; results and on_result's lines in completion order) in threads: each scoring is a sandboxed child
    of its own either way, and the scorer is thread-safe (tests/test_score.py scores its files in threads)."""
    results = []
    with ThreadPoolExecutor(workers) as ex:
        for future in as_completed([ex.submit(fn, *job) for job in jobs]):
            results.append(future.result())
            line = on_result(results[-1]) if on_result else None
            if line is not None:
                print(line, flush=True)
    return results


def test_all_is_every_file_in_baselines_but_retrain_and_the_default_set_is_part_of_it() -> None:
    """retrain is what the pool's held-out half measures for every result (score.ceiling), so the
    lists leave it out; it stays a file to score on its own."""
    default = compose_config("baseline", ["logger=none"], Path("/tmp")).baselines
    every = compose_config("baseline", ["logger=none", "baselines=all"], Path("/tmp")).baselines
    assert sorted(every.methods) == [m for m in METHODS if m != "retrain"] and len(set(every.methods)) == len(
        every.methods
    )
    assert set(default.methods) < set(every.methods) and default.dir is every.dir is None
    assert len(METHODS) >= 17


def test_the_baselines_scored_in_make_test_are_the_default_set_and_retrain() -> None:
    default = compose_config("baseline", ["logger=none"], Path("/tmp")).baselines.methods
    assert SCORED == sorted({*default, "retrain"}) and len(SCORED) >= 8  # the ceiling test wants 8 results
    assert sorted(SCORED + REST) == METHODS and len(REST) >= 1


@pytest.mark.parametrize("name", [n if n in SCORED else pytest.param(n, marks=pytest.mark.slow) for n in METHODS])
def test_each_baseline_is_scored_through_the_sandbox(request: pytest.FixtureRequest, name: str) -> None:
    out, results = request.getfixturevalue("scored" if name in SCORED else "scored_all")
    result = results[name]
    assert result.status == "scored", result.message
    assert Result.read(out / name / "result.json") == result
    assert pickle.loads(pickle.dumps(result)) == result  # as a spawned worker of `challenge baseline` returns it
    samples = result.confidence_samples
    assert len(samples.unlearned) == min(4, result.score.n_examples)
    assert all(len(u) == len(r) == 3 for u, r in zip(samples.unlearned, samples.retrained))


@pytest.fixture(scope="module")
def run_inputs(scored: tuple[Path, dict[str, Result]], tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """What the sandboxed child is given (the pool's original; retain, forget and val as staged), and the data."""
    pool, dm = _pool_and_data(scored[0])
    data = tmp_path_factory.mktemp("staged") / DATA
    torch.save(staged_data(dm), data)
    return load_net(pool.original_path), load_parts(data), dm


@pytest.mark.parametrize("name", REST)
def test_the_other_baselines_run_as_a_runs_process_runs_them_and_the_judge_takes_their_model(
    run_inputs: tuple, tmp_path: Path, name: str
) -> None:
    """A baseline scored through the sandbox in `make test-all` only: here its file goes through the steps of a
    run's process (challenge.scoring.run.Run: load_submission, seed, the run's loaders, unlearning(), save) in this
    process, then the judge's strict load of the weights (load_weights) and its outputs on the forget images: what
    decides the verdicts that depend on the file (raised, not_a_model, wrong_architecture, non_finite). The sandbox,
    the meter and the judge around a run are the same for every file; the SCORED baselines go through them."""
    (original, spec, _), parts, dm = run_inputs
    source = KIT_BASELINES / f"{name}.py"
    try:
        unlearning = load_submission(source, compile_submission(source))
    finally:
        sys.modules.pop("submission", None)  # where load_submission puts the module
    torch.set_num_threads(1)  # scorer.threads, as in a run's process
    seed_everything(0)
    net = copy.deepcopy(original)  # a run's process changes its own copy
    torch.set_grad_enabled(True)
    returned = unlearning(net, *loaders(parts, dm.batch_size, 0))
    weights = tmp_path / f"{run_name(0)}{WEIGHTS}"
    save(returned, net, 0, weights)
    logits, _ = predict_logits(load_weights(spec, weights, 0), dm.loader("forget"))
    assert logits.shape == (len(dm.dataset("forget")), dm.num_classes) and torch.isfinite(logits).all()


def test_do_nothing_has_the_lowest_possible_forget_quality(scored: tuple[Path, dict[str, Result]]) -> None:
    _, results = scored
    f = {name: r.score.forget_quality for name, r in results.items()}
    assert f["do_nothing"] == 0.0  # identical runs: a point mass every retrained spread tells apart
    assert f["retrain"] > 0.0
    assert min(f.values()) == f["do_nothing"]


def _pool_and_data(out: Path) -> tuple[Pool, Any]:
    """The fixture's pool and data, composed again as the scorer did."""
    cfg = compose_config("baseline", SCORE, out)
    dm = instantiate(cfg.data)
    dm.setup()
    return Pool.for_config(cfg, dm), dm


def test_the_ceiling_is_the_held_out_half_of_the_pool_scored_against_the_reference(
    scored: tuple[Path, dict[str, Result]],
) -> None:
    out, results = scored
    pool, _ = _pool_and_data(out)
    entries = pool.entries(6)
    assert [e.seed for e in entries] == list(range(1000, 1006))
    held, ref = np.stack([e.confidences for e in entries[3:]]), np.stack([e.confidences for e in entries[:3]])
    expected = forget_score(per_example_epsilon(held, ref), 3)
    ceilings = [r.score.ceiling for r in results.values() if r.score]
    assert len(ceilings) >= 8
    for c in ceilings:  # one ceiling per pool, whichever method is scored
        assert c.forget_quality == expected
        assert (c.n_models, c.n_examples) == (3, held.shape[1])
        assert "seeds 1003-1005" in c.source


def test_reference_matches_the_original_net_and_the_pools_entries(scored: tuple[Path, dict[str, Result]]) -> None:
    """The original's figures equal evaluating its net again (train directly, not from its parts); the
    retrained ones are the entries' means, and their forget confidence agrees with the logit-scaled
    confidences the metric uses (p = sigmoid of them)."""
    out, results = scored
    pool, dm = _pool_and_data(out)
    ref = results["do_nothing"].reference
    assert ref.missing is None and ref.models == 3
    assert all(r.reference == ref for r in results.values())  # the pool's, whichever method
    net, _, _ = load_net(pool.original_path)
    for part in ("train", "retain", "forget", "test"):
        logits, targets = predict_logits(net, dm.loader(part))
        assert ref.original[part]["acc"] == pytest.approx(
            accuracy(logits, targets), abs=1e-6
        )  # float32 means; one image is 1e-3
        assert ref.original[part]["confidence"] == pytest.approx(mean_confidence(logits, targets), abs=1e-5)
    entries = pool.entries(3)
    for part in ("train", "retain", "forget", "test"):
        for key in ("acc", "confidence"):
            assert ref.retrained[part][key] == pytest.approx(
                np.mean([e.metrics[part][key] for e in entries]), abs=1e-12
            )
    assert ref.retrained["test"]["acc"] == pytest.approx(np.mean([e.test_acc for e in entries]), abs=1e-12)
    sigmoid = [np.mean(1.0 / (1.0 + np.exp(-e.confidences))) for e in entries]
    assert ref.retrained["forget"]["confidence"] == pytest.approx(np.mean(sigmoid), rel=1e-5)
    lines = format_summary(summary(pool, 3)).splitlines()
    assert [line.split()[0] for line in lines[3:]] == ["original", "retrained"]
    assert float(lines[4].split()[5]) == round(ref.retrained["forget"]["acc"], 3)


def test_leaks_are_the_top_epsilon_forget_images_as_pngs_of_their_own_pixels(
    scored: tuple[Path, dict[str, Result]],
) -> None:
    out, results = scored
    _, dm = _pool_and_data(out)
    for name, result in results.items():
        ex, leaks = result.examples, result.leaks
        eps = [leak.epsilon for leak in leaks]
        assert len(leaks) == min(8, len(ex.epsilon)), name
        assert eps == sorted(ex.epsilon, reverse=True)[: len(leaks)], name
        for leak in leaks:
            k = ex.image_id.index(leak.image_id)
            assert (leak.person_id, leak.epsilon, leak.unlearned_confidence, leak.retrained_confidence) == (
                ex.person_id[k],
                ex.epsilon[k],
                ex.unlearned_confidence[k],
                ex.retrained_confidence[k],
            )
            picture = Image.open(io.BytesIO(base64.b64decode(leak.png)))
            assert (picture.format, picture.size, picture.mode) == ("PNG", (32, 32), "RGB")  # the tiny preset's faces
            assert np.array_equal(np.asarray(picture), dm.faces.images[leak.image_id].permute(1, 2, 0).numpy())
    nothing = results["do_nothing"]
    assert len(set(nothing.examples.epsilon)) == 1  # all tied at the cap: image order decides
    assert [leak.image_id for leak in nothing.leaks] == nothing.examples.image_id[:8]


@pytest.mark.parametrize("name", METHODS)
def test_baselines_are_self_contained_and_cite_a_source(name: str) -> None:
    """A participant file may import torch and numpy only; its docstring says where the method comes from."""
    tree = ast.parse((KIT_BASELINES / f"{name}.py").read_text())
    imported = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= {"torch", "numpy", "copy", "math", "itertools"}, imported
    doc = ast.get_docstring(tree) or ""
    assert "Source:" in doc


def test_budget_exemption_only_for_the_kits_own_baselines(tmp_path: Path) -> None:
    assert budget_exempt(KIT_BASELINES / "retrain.py")
    assert not budget_exempt(KIT_BASELINES / "finetune.py")
    copy = tmp_path / "retrain.py"
    shutil.copyfile(KIT_BASELINES / "retrain.py", copy)
    assert not budget_exempt(copy)


def test_exempt_retrain_is_scored_past_the_budget_and_a_copy_is_not(
    scored: tuple[Path, dict[str, Result]], tmp_path: Path
) -> None:
    """Runs are reused from the fixture's scoring, so only the verdict is at stake here."""
    cfg = compose_config("baseline", [*SCORE, "scorer.budget_seconds=0.01"], tmp_path)
    exempt = score_submission(cfg, KIT_BASELINES / "retrain.py", tmp_path / "exempt")
    assert exempt.status == "scored" and exempt.settings.budget_exempt
    copy = tmp_path / "my_retrain.py"
    copy.write_text((KIT_BASELINES / "retrain.py").read_text() + "\n# a participant's copy\n")
    assert score_submission(cfg, copy, tmp_path / "copy").status == "timeout"


# -- the report ------------------------------------------------------------------------------------
def test_table_ranks_and_marks_unscored_and_exempt_rows(scored: tuple[Path, dict[str, Result]]) -> None:
    out, results = scored
    rows = rank(
        [LeaderboardRow.from_result(n, r, out / n) for n, r in results.items()] + [LeaderboardRow("broken", "timeout")]
    )
    table = leaderboard_table(rows)
    assert [r.name for r in rows][-1] == "broken"
    finals = [r.final_score for r in rows[:-1]]
    assert finals == sorted(finals, reverse=True)
    assert all(name in table for name in [*SCORED, "broken"])
    assert "(exempt)" in next(line for line in table.splitlines() if " retrain " in line)
    # every scored neighbour pair is compared paired, from the confidences kept in out/<method>/
    assert [r.compared for r in rows] == ["paired"] * (len(SCORED) - 1) + [None, None]
    assert all(0.0 <= r.p_next <= 1.0 and r.close == (0.05 < r.p_next < 0.95) for r in rows[:-2])
    assert "P(F > next)" in table.splitlines()[1]  # under the ceiling line


def test_the_power_figure_pairs_the_ranked_neighbours_on_their_kept_runs(
    scored: tuple[Path, dict[str, Result]], tmp_path: Path
) -> None:
    from challenge.commands.baseline import power_figure

    out, results = scored
    rows = rank([LeaderboardRow.from_result(n, r, out / n) for n, r in results.items()])
    cfg = compose_config("baseline", [*SCORE, "power.n_bootstrap=20"], tmp_path)
    figure = power_figure(cfg, rows, (4,))  # no group smaller than the kept runs here: the figure at N alone
    names = [r.name for r in rows if r.confidences]
    assert [(p.above, p.below) for p in figure.pairs] == list(zip(names, names[1:]))
    assert figure.kept == cfg.scorer.n_runs == 3 and [p.n for p in figure.points] == [3]
    assert json.loads(json.dumps(figure.to_dict()))["pairs"][0]["above"] == names[0]


def test_html_escapes_names(tmp_path: Path) -> None:
    page = write_html(
        "t", [LeaderboardRow("<script>x</script>", "scored", team="a&b")], {}, tmp_path / "r.html"
    ).read_text()
    assert "<script>x" not in page and "&lt;script&gt;" in page and "a&amp;b" in page


def test_report_opens_in_chromium_with_every_row_and_plot(
    scored: tuple[Path, dict[str, Result]], browser, tmp_path: Path
) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    _, results = scored
    rows = rank(LeaderboardRow.from_result(n, r) for n, r in results.items())
    page = write_html("Baselines", rows, results, tmp_path / "report.html")
    browser.get(page.as_uri())
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    shown = [tr.get_attribute("data-name") for tr in browser.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr")]
    assert sorted(shown) == SCORED
    images = browser.find_elements(By.TAG_NAME, "img")
    thumbs = browser.find_elements(By.CSS_SELECTOR, ".leaks img")
    assert len(images) - len(thumbs) == 1 + len(SCORED)  # the summary, then one figure per method
    assert all(
        browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0 for img in images
    )
    # each method's leaked faces: one thumbnail per `leaks` entry, in ε order, the alt naming the image
    alts = [img.get_attribute("alt") for img in thumbs]
    expected = [leak for name in (r.name for r in rows) for leak in results[name].leaks]
    assert len(alts) == len(expected) == sum(min(8, len(results[m].examples.epsilon)) for m in SCORED) > 0
    assert all(
        alt.startswith(f"forget image {leak.image_id} (person {leak.person_id}), ε = ")
        for alt, leak in zip(alts, expected)
    )
    sizes = {
        tuple(
            browser.execute_script("return [arguments[0].naturalWidth, arguments[0].width, arguments[0].height]", img)
        )
        for img in thumbs
    }
    assert sizes == {(32, 64, 64)}  # 32 px faces, shown twice their size
    captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, ".leaks figcaption")]
    assert captions[0] == f"ε {expected[0].epsilon:.1f} · person {expected[0].person_id}"
    headings = {h.text for h in browser.find_elements(By.TAG_NAME, "h2")}
    assert headings == set(SCORED)


# -- `challenge compare` on the scored baselines ---------------------------------------------------
def compare_cli(tmp_path: Path, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """The real entry point in process: (exit status, stdout, stderr)."""
    try:
        status = main(["compare", *map(str, args), f"hydra.run.dir={tmp_path / 'run'}"])
    except SystemExit as e:  # a ChallengeError inside the Hydra app exits through sys.exit
        status = int(e.code)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_kept_confidences_are_the_ones_the_score_came_from(scored: tuple[Path, dict[str, Result]]) -> None:
    out, results = scored
    for name in ("retrain", "finetune"):
        result = results[name]
        assert result.forget_confidences == "forget_confidences.npz"
        kept = read_confidences(out / name / "forget_confidences.npz")
        k = result.score.n_examples
        assert kept.unlearned.shape == kept.retrained.shape == (3, k) and kept.unlearned.dtype == np.float64
        assert kept.pool_fingerprint == result.pool.fingerprint
        again = compare_kept(kept, kept, n_bootstrap=5)
        assert again.forget_quality_a == result.score.forget_quality  # bit for bit: the same arrays the scorer used
        # the interval's replicates, kept for comparisons: they are the ones a recomputation gives
        b, seed = result.score.n_bootstrap, result.score.seed
        assert kept.draw == draw_key(seed, b) and kept.replicates.shape == (b,)
        assert compare_kept(kept, kept, b, seed) == compare_kept(*[replace(kept, replicates=None)] * 2, b, seed)


def test_compare_defaults_to_the_results_own_bootstrap(
    scored: tuple[Path, dict[str, Result]], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out, results = scored
    status, stdout, stderr = compare_cli(
        tmp_path, capsys, out / "retrain" / "result.json", out / "finetune" / "result.json"
    )
    assert status == 0, stderr
    b = results["retrain"].score.n_bootstrap
    c = compare_kept(
        *(read_confidences(out / n / "forget_confidences.npz") for n in ("retrain", "finetune")),
        b,
        results["retrain"].score.seed,
    )
    assert stdout.splitlines()[0].endswith(f", {b} replicates") and f"= {c.p_a_above:.3f}" in stdout.splitlines()[4]


def test_a_cached_result_comes_with_its_confidences(scored: tuple[Path, dict[str, Result]], tmp_path: Path) -> None:
    out, _ = scored
    cfg = compose_config("baseline", SCORE, tmp_path)
    again = score_submission(cfg, KIT_BASELINES / "finetune.py", tmp_path / "again")
    assert again.timing == Result.read(out / "finetune" / "result.json").timing  # the cached result, not a rescoring
    assert (tmp_path / "again" / "forget_confidences.npz").read_bytes() == (
        out / "finetune" / "forget_confidences.npz"
    ).read_bytes()


def test_compare_prints_both_f_the_paired_difference_and_p(
    scored: tuple[Path, dict[str, Result]], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out, results = scored
    status, stdout, stderr = compare_cli(
        tmp_path, capsys, out / "retrain" / "result.json", out / "do_nothing" / "result.json", "--bootstrap", "50"
    )
    assert status == 0, stderr
    c = compare_kept(
        *(read_confidences(out / n / "forget_confidences.npz") for n in ("retrain", "do_nothing")), n_bootstrap=50
    )
    lines = stdout.splitlines()
    fingerprint = results["retrain"].pool.fingerprint
    assert (
        lines[0]
        == f"paired comparison on pool {fingerprint}: N = 3 models, K = {results['retrain'].score.n_examples} forget "
        "examples, 50 replicates"
    )
    for line, name in zip(lines[1:3], ("retrain", "do_nothing")):
        s = results[name].score
        assert line.split() == [
            "F",
            name,
            f"{s.forget_quality:.4f}",
            f"[{s.forget_quality_ci[0]:.4f},",
            f"{s.forget_quality_ci[1]:.4f}]",
        ]
    lo, hi = c.difference_ci
    assert lines[3].split() == [
        "F",
        "retrain",
        "-",
        "F",
        "do_nothing",
        f"{c.difference:+.4f}",
        f"[{lo:+.4f},",
        f"{hi:+.4f}]",
        "(95%",
        "paired",
        "interval)",
    ]
    assert lines[4] == f"  P(F retrain > F do_nothing) = {c.p_a_above:.3f}"
    verdict = "separated at 95%: retrain forgets better than do_nothing" if c.separated else "not separated at 95%"
    assert lines[5].startswith(verdict) and len(lines) == 6


def test_compare_refuses_results_from_two_pools_naming_both(
    scored: tuple[Path, dict[str, Result]], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The do_nothing result as if scored on another pool: its result.json and kept file re-labelled alike."""
    out, results = scored
    other = tmp_path / "other"
    nothing = results["do_nothing"]
    replace(nothing, pool=PoolInfo("0123456789abcdef", nothing.pool.root, nothing.pool.models)).write(
        other / "result.json"
    )
    kept = read_confidences(out / "do_nothing" / "forget_confidences.npz")
    write_confidences(other / "forget_confidences.npz", Confidences(kept.unlearned, kept.retrained, "0123456789abcdef"))
    status, stdout, stderr = compare_cli(tmp_path, capsys, out / "retrain" / "result.json", other / "result.json")
    mine = results["retrain"].pool.fingerprint
    assert (status, stdout) == (2, "")
    assert (
        stderr
        == f"error: the results were scored on different pools ({mine} and 0123456789abcdef): a paired comparison "
        "needs both scored on the same pool\n"
    )


def test_compare_names_a_missing_an_unscored_and_a_bare_result(
    scored: tuple[Path, dict[str, Result]], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out, _ = scored
    good = out / "retrain" / "result.json"
    missing = tmp_path / "nowhere" / "result.json"
    unscored_dir = tmp_path / "unscored"
    assert (
        score_submission(
            compose_config("baseline", SCORE, unscored_dir), tmp_path / "no_such_file.py", unscored_dir
        ).status
        == "not_found"
    )
    bare = tmp_path / "bare" / "result.json"  # a scored result.json without the confidences kept beside it
    bare.parent.mkdir()
    shutil.copyfile(out / "finetune" / "result.json", bare)
    expected = {
        missing: f"error: no result at {missing}: give the result.json that `challenge score` wrote in its run folder",
        unscored_dir
        / "result.json": f"error: {unscored_dir / 'result.json'} is not a scored result (status not_found): "
        "only a scored submission has an F to compare; fix it and score it again",
        bare: f"error: {bare} has no forget_confidences.npz beside it (the file was moved): "
        "score the submission again, and keep the two files together",
    }
    assert not (unscored_dir / "forget_confidences.npz").exists()
    for path, line in expected.items():
        status, stdout, stderr = compare_cli(tmp_path, capsys, good, path)
        assert (status, stdout, stderr) == (2, "", line + "\n"), path


# -- the whole command -----------------------------------------------------------------------------
@pytest.mark.slow
def test_make_baseline_twice_second_run_reuses_everything(tmp_path: Path) -> None:
    env = {"CHALLENGE_CACHE_DIR": str(tmp_path / "cache")}
    args = ["baseline", *TINY, "scorer.budget_seconds=120", "scorer.n_bootstrap=20"]
    first = run_cli(*args, f"hydra.run.dir={tmp_path}/run1", env=env, timeout=1800)
    assert first.returncode == 0, first.stderr
    assert "s/run / budget" in first.stdout and "do_nothing" in first.stdout
    methods = list(compose_config("baseline", TINY, tmp_path).baselines.methods)  # the default set
    n = len(methods)
    steps = [
        line for line in first.stdout.splitlines() if line.startswith("baseline: method ")
    ]  # not a terminal: one line per step
    assert [line.split(" [")[0] for line in steps] == [f"baseline: method {i}/{n}" for i in range(n + 1)]
    assert steps[-1].endswith("ETA done")
    for name in methods:
        assert Result.read(tmp_path / "run1" / name / "result.json").status == "scored"
    assert (tmp_path / "run1" / "report.html").stat().st_size > 10_000
    assert "how many models are enough" in first.stdout and (tmp_path / "run1" / "power.json").is_file()

    second = run_cli(*args, f"hydra.run.dir={tmp_path}/run2", env=env, timeout=600)
    assert second.returncode == 0, second.stderr
    stages = json.loads((tmp_path / "run2" / "timings.json").read_text())["stages"]
    assert stages["original"]["note"] == "reused" and "reused" in stages["pool"]["note"]
    assert all("result reused" in stages[name]["note"] for name in methods)
