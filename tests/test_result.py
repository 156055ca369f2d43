"""result.json as a typed Result: written and read in one place, bit for bit, and a file of another
schema refused in one line. A real scoring's result goes through the same in tests/test_score.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import challenge
from challenge.competition.bundle import COLUMNS
from challenge.scoring.result import SCHEMA_VERSION, Result, ResultError
from challenge.scoring.row import LeaderboardRow
from tests.results import make_result, make_score, metric_score, rejected

RESCORE = "re-score it with `challenge score FILE.py scorer.fresh=true` to rewrite it"


def test_a_scored_result_round_trips_bit_for_bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    r = rng.normal(0, 1, (3, 5))
    result = make_result(metric_score(r + rng.normal(0, 0.3, (3, 5)), r))  # floats of the metric: every bit matters
    path = tmp_path / "result.json"
    result.write(path)
    back = Result.read(path)
    assert back == result and back.to_json() == path.read_text()
    data = json.loads(path.read_text())
    assert list(data)[:3] == ["schema_version", "status", "message"] and data["schema_version"] == SCHEMA_VERSION == 5
    # the keys docs and users read, where they always were
    assert data["score"]["forget_quality"] == result.score.forget_quality
    assert data["budget"]["calibration"]["clock"] == "cpu" and data["leaks"][0]["png"] == "iVBORw0KGgo="
    assert data["settings"]["n_runs"] == 3 and data["params"]["values"] == {"lr": 0.01}
    assert data["scenario"]["name"] == "class" and data["scenario"]["figures"]["focus_acc"]["retrained"] is None


def test_a_rejected_result_is_a_result_too(tmp_path: Path) -> None:
    result = rejected("timeout", "run 0 was stopped")
    result.write(tmp_path / "result.json")
    back = Result.read(tmp_path / "result.json")
    assert back == result and not back.scored and back.score is None and back.runs == [] and back.examples is None
    assert json.loads((tmp_path / "result.json").read_text())["budget"]["calibration"] is None
    assert LeaderboardRow.from_result("m", back) == LeaderboardRow("m", "timeout", "run 0 was stopped")


@pytest.mark.parametrize(
    ("version", "found"),
    [
        (None, "no schema version (an earlier kit's)"),
        (1, "schema version 1"),
        (3, "schema version 3"),
        (4, "schema version 4"),
        (6, "schema version 6"),
    ],
)
def test_a_result_of_another_schema_is_refused_naming_the_file_and_the_fix(
    tmp_path: Path, version: int | None, found: str
) -> None:
    data = make_result(make_score()).to_dict()
    if version is None:
        del data["schema_version"]
    else:
        data["schema_version"] = version
    path = tmp_path / "result.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultError) as e:
        Result.read(path)
    kit = challenge.__version__
    assert (
        str(e.value) == f"{path} is a result of {found}, and kit {kit} reads schema version {SCHEMA_VERSION}: {RESCORE}"
    )


def test_a_result_of_this_schema_but_another_shape_names_where_it_differs(tmp_path: Path) -> None:
    data = make_result(make_score(ceiling=None)).to_dict()
    del data["budget"]["run_wall"]
    path = tmp_path / "result.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultError) as e:
        Result.read(path)
    where = "budget: missing key 'run_wall'"
    assert str(e.value) == f"{path} does not hold a result of schema version {SCHEMA_VERSION} ({where}): {RESCORE}"
    data["budget"]["run_wall"], data["runs"] = [], {"0": 1}
    path.write_text(json.dumps(data))
    with pytest.raises(ResultError, match=r"\(runs: a list was expected, not dict\)"):
        Result.read(path)
    path.write_text("{")
    with pytest.raises(ResultError, match=r"result.json is not JSON \(Expecting property name"):
        Result.read(path)


def test_the_leaderboard_row_gives_scores_json_in_the_bundles_columns() -> None:
    score = make_score(
        forget_quality=0.2, final_score=0.15, forget_quality_ci=[0.1, 0.3], retain_ratio=0.9, test_ratio=0.8
    )
    row = LeaderboardRow.from_result("m", make_result(score, run_cost=(1.0, 2.0, 3.0), per_run=4.0))
    attack_keys = ("ulira_accuracy", "klom", "auc_fold", "retain_f", "test_f")
    assert {k: v for k, v in row.scores().items() if k not in attack_keys} == {
        "final_score": 0.15,
        "forget_quality": 0.2,
        "f_ci_low": 0.1,
        "f_ci_high": 0.3,
        "retain_ratio": 0.9,
        "test_ratio": 0.8,
        "seconds_per_run": 2.0,
    }
    assert all(math.isnan(row.scores()[k]) for k in attack_keys)  # none in make_score: NaN, still a number
    assert list(row.scores()) == [c.key for c in COLUMNS]
    assert [c.sorting for c in COLUMNS] == ["desc"] * 6 + ["asc"] * 4 + ["desc"] * 2
    assert (row.budget_seconds, row.budget_used) == (4.0, pytest.approx((6.0 / 4.0) / 3))  # the runs alone
    without_ci = LeaderboardRow.from_score("m", make_score(forget_quality_ci=None), [1.0]).scores()
    assert math.isnan(without_ci["f_ci_low"]) and math.isnan(without_ci["f_ci_high"])  # a number in every column
