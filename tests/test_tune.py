"""`challenge tune`: Optuna through Hydra's sweeper on a tuning split, resumable, best.json for params_file.

The refusals cost no pool; the sweep runs on stand-in pools (the scores mean nothing, the mechanics
are all real: the sweeper, the SQLite study in the cache, the sandboxed scorings of each trial).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from challenge.cli import main
from challenge.commands.tune import objective, start_from_file
from challenge.pool import write_stand_in
from challenge.scoring.context import KIT_BASELINES
from challenge.scoring.scorer import score_submission
from tests.conftest import compose_config
from tests.results import make_result, make_score, rejected
from tests.test_score import SCORE, SYNTHETIC

FILE = Path(__file__).resolve().parent / "submissions" / "with_params.py"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            [str(FILE), "tune.split_seed=0"],
            "error: tune.split_seed=0 is the evaluation split (tune.evaluation_seed): tune on another split, e.g. "
            "tune.split_seed=1",
        ),
        (
            [str(KIT_BASELINES / "do_nothing.py")],
            "error: do_nothing.py needs module-level PARAMS and SEARCH dicts to be tuned",
        ),
        (
            [str(FILE), "+params.scale=0.5"],
            "error: every name of SEARCH in with_params.py is fixed by +params: leave at least one to search",
        ),
        (
            [str(FILE), "tune.objective=accuracy"],
            "error: tune.objective=accuracy is not one of final_score, forget_quality",
        ),
    ],
)
def test_tune_refuses_in_one_line_before_any_pool(
    args: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    status = main(["tune", *args, f"paths.log_dir={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith(words), err
    assert not any(tmp_path.iterdir())


def test_a_new_study_starts_from_the_files_own_params_inside_search(tmp_path: Path) -> None:
    space = {
        "lr": "tag(log, interval(0.001, 0.1))",
        "epochs": "range(1, 4)",
        "mode": "choice(kl, ce)",
        "far": "interval(0.0, 1.0)",
    }
    source = f'PARAMS = {{"lr": 0.01, "epochs": 2, "mode": "kl", "far": 9.0}}\nSEARCH = {space!r}\n'.encode()
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    assert start_from_file("s", storage, source, space) == {
        "lr": 0.01,
        "epochs": 2,
        "mode": "kl",
    }  # far=9.0 is outside its range
    study = optuna.load_study(study_name="s", storage=storage)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].system_attrs["fixed_params"] == {
        "+params.lr": 0.01,
        "+params.epochs": 2,
        "+params.mode": "kl",
    }
    assert start_from_file("s", storage, source, space) == {}  # a study with trials is resumed, not seeded again
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 1


def test_a_trial_near_the_budgets_edge_scores_zero_so_tuned_values_keep_headroom() -> None:
    result = make_result(make_score(final_score=0.08, forget_quality=0.1), run_cost=(0.5, 0.69), per_run=1.0)
    assert objective(result, "final_score", 0.7) == 0.08 and objective(result, "forget_quality", 0.7) == 0.1
    at_95 = make_result(result.score, run_cost=(0.5, 0.95), per_run=1.0)
    assert objective(at_95, "final_score", 0.7) == 0.0  # scored, but at 95%
    assert (
        objective(replace(at_95, budget=replace(at_95.budget, exempt=True)), "final_score", 0.7) == 0.08
    )  # no budget to keep
    assert objective(rejected("timeout"), "final_score", 0.7) == 0.0


@pytest.mark.slow
def test_tune_searches_resumes_and_its_best_json_scores(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_stand_in(
        compose_config("pool", [*SYNTHETIC, "data.split.seed=1"], tmp_path / "pool"),
        3,
        seconds=10.0,
        accuracies={"retain": 0.5, "forget": 0.3, "test": 0.4},
    )
    args = ["tune", str(FILE), *SCORE, "scorer.n_bootstrap=0"]
    assert main([*args, "tune.trials=2", f"hydra.sweep.dir={tmp_path / 'first'}"]) == 0
    first = json.loads((tmp_path / "first" / "best.json").read_text())
    assert first["trials"] == 2 and first["tuning_split"] == 1 and set(first["params"]) == {"scale"}
    assert 0.5 <= first["params"]["scale"] <= 1.0 and first["value"] == max(h["value"] for h in first["history"])
    assert first["history"][0]["params"] == {"scale": 1.0}  # trial 0: the file's own PARAMS
    assert {"0", "1"} <= {p.name for p in (tmp_path / "first").iterdir() if p.is_dir()}  # one job folder per trial
    for job in ("0", "1"):  # each trial a real scoring on the tuning split, with its own params
        result = json.loads((tmp_path / "first" / job / "result.json").read_text())
        assert result["params"]["changed"]["scale"] == first["history"][int(job)]["params"]["scale"]
    capsys.readouterr()
    # Asking for 3 in all runs one more trial on the same study, which the storage in the cache keeps.
    assert main([*args, "tune.trials=3", f"hydra.sweep.dir={tmp_path / 'second'}"]) == 0
    assert "2 trial(s) done, 1 to go" in capsys.readouterr().out
    second = json.loads((tmp_path / "second" / "best.json").read_text())
    assert second["trials"] == 3 and second["history"][:2] == first["history"] and second["study"] == first["study"]
    study = optuna.load_study(study_name=second["study"], storage=second["storage"])
    assert len(study.trials) == 3
    # best.json is what params_file takes: the same values as that trial's +params, the same result.
    best_job = (
        tmp_path / ("first" if second["trial"] < 2 else "second") / str(second["trial"] if second["trial"] < 2 else 0)
    )
    again = score_submission(
        compose_config(
            "score",
            [*SCORE, "scorer.n_bootstrap=0", "data.split.seed=1", f"params_file={tmp_path / 'second' / 'best.json'}"],
            tmp_path / "again",
        ),
        FILE,
        tmp_path / "again",
    )
    assert again["score"] == json.loads((best_job / "result.json").read_text())["score"]
