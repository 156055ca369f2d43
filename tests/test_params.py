"""A file's PARAMS: read from its source, changed by +params and params_file, recorded, and part of the run key.

The unit cases need no torch; two scorings of one file through the real sandbox (at once, each child
pays the torch import) show that the values reach `unlearning()` and that each set of values has
runs of its own, while the file's own values keep the file's old key.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from challenge.cli import main
from challenge.errors import ChallengeError
from challenge.scoring.context import KIT_BASELINES
from challenge.scoring.params import Params, declared, read_params_file, resolve, search_space
from challenge.scoring.result import Result
from challenge.scoring.scorer import score_submission
from tests.conftest import compose_config
from tests.test_score import SCORE, tiny_pool  # noqa: F401 - the session's stand-in pool

FILE = Path(__file__).resolve().parent / "submissions" / "with_params.py"


def test_declared_reads_the_literal_dict_without_running_the_file(tmp_path: Path) -> None:
    assert declared(FILE.read_bytes()) == {"scale": 1.0, "rounds": 1, "note": "plain"}
    assert declared(b"import os\nPARAMS = dict(lr=os.system('x'))\n") is None  # not a literal: never evaluated
    assert declared(b"PARAMS = {'a': (1, 2)}\nPARAMS = {'a': 3}\n") == {"a": 3}  # the last assignment, as Python would
    assert declared(b"def f(:\n") is None


def test_overrides_are_coerced_to_the_files_types_and_only_real_changes_count() -> None:
    p = resolve(FILE, {"scale": 1, "rounds": 2.0}, None)
    assert p.values == {"scale": 1.0, "rounds": 2, "note": "plain"}
    assert type(p.values["scale"]) is float and type(p.values["rounds"]) is int
    assert p.changed == {"rounds": 2}  # scale=1 is the file's own 1.0: the same run
    assert resolve(FILE, {}, None).changed == {}


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"scal": 0.5}, "unknown parameter 'scal' (+params) for with_params.py: it declares note, rounds, scale"),
        ({"rounds": 1.5}, "params.rounds=1.5 is a float, but the file's value 1 is an int: give an int"),
        ({"scale": True}, "params.scale=True is a bool, but the file's value 1.0 is a float"),
        ({"note": 3}, "params.note=3 is an int, but the file's value 'plain' is a str"),
    ],
)
def test_bad_overrides_are_one_line_naming_the_fix(overrides: dict, words: str) -> None:
    with pytest.raises(ChallengeError, match="^" + re.escape(words)):
        resolve(FILE, overrides, None)


def test_a_file_without_params_refuses_overrides_and_scores_as_before(tmp_path: Path) -> None:
    plain = KIT_BASELINES / "do_nothing.py"
    assert resolve(plain, {}, None).values == {}
    with pytest.raises(ChallengeError, match=r"do_nothing.py declares no PARAMS dict, so params.lr cannot be set"):
        resolve(plain, {"lr": 0.1}, None)


def test_params_file_takes_tunes_best_json_or_a_plain_object_and_params_win(tmp_path: Path) -> None:
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"params": {"scale": 0.5, "rounds": 3}, "objective": 0.1}))
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"scale": 0.25}))
    assert resolve(FILE, {}, str(best)).changed == {"scale": 0.5, "rounds": 3}
    assert resolve(FILE, {"rounds": 1}, str(best)).changed == {"scale": 0.5}  # +params over the file
    assert resolve(FILE, {}, str(plain)).file == str(plain)
    with pytest.raises(
        ChallengeError, match="no params file at .*missing.json: give the best.json that `challenge tune` wrote"
    ):
        resolve(FILE, {}, str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ChallengeError, match="is not readable JSON"):
        read_params_file(tmp_path / "bad.json")
    (tmp_path / "wrong.json").write_text(json.dumps({"params": {"lr": 1.0}}))
    with pytest.raises(ChallengeError, match=r"unknown parameter 'lr' \(params_file .*wrong.json\)"):
        resolve(FILE, {}, str(tmp_path / "wrong.json"))


def test_search_space_names_only_declared_params(tmp_path: Path) -> None:
    assert search_space(FILE.read_bytes(), FILE) == {"scale": "interval(0.5, 1.0)"}
    bad = b"PARAMS = {'lr': 0.1}\nSEARCH = {'lr': 'interval(0, 1)', 'epochs': 'range(1, 3)'}\n"
    with pytest.raises(
        ChallengeError, match="SEARCH in x.py names epochs, which PARAMS does not declare: it declares lr"
    ):
        search_space(bad, Path("x.py"))
    with pytest.raises(ChallengeError, match="needs module-level PARAMS and SEARCH dicts"):
        search_space(b"PARAMS = {'lr': 0.1}\n", Path("x.py"))


def test_every_kit_baseline_declares_params_and_a_search_space_over_them() -> None:
    for path in sorted(KIT_BASELINES.glob("*.py")):
        if path.stem == "do_nothing":
            continue
        assert search_space(path.read_bytes(), path), path.name


def test_cli_refuses_an_unknown_param_in_one_line_before_any_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status = main(["score", str(FILE), "+params.scal=0.5", "logger=none", f"hydra.run.dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err == [
        "error: unknown parameter 'scal' (+params) for with_params.py: it declares note, rounds, scale"
    ]
    assert not (tmp_path / "run").exists()


def test_params_reach_the_runs_are_recorded_and_key_their_own_runs(tiny_pool: None, tmp_path: Path) -> None:  # noqa: F811
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"params": {"scale": 0.5}}))
    jobs = {"own": [], "half": ["+params.scale=0.5"]}
    cache = Path(compose_config("score", SCORE, tmp_path).paths.cache_dir) / "scores"
    before = set(cache.iterdir()) if cache.is_dir() else set()  # another test of the session may have scored this file

    def one(name: str) -> Result:
        return score_submission(compose_config("score", [*SCORE, *jobs[name]], tmp_path / name), FILE, tmp_path / name)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(jobs, pool.map(one, jobs)))
    own, half = results["own"], results["half"]
    assert own.status == half.status == "scored", (own.message, half.message)
    assert own.params == Params({"scale": 1.0, "rounds": 1, "note": "plain"}, {}, None)
    assert half.params.values["scale"] == 0.5 and half.params.changed == {"scale": 0.5}
    # Halving every weight changes the outputs: the value reached unlearning() in every run.
    assert [r.retain_acc for r in own.runs] != [r.retain_acc for r in half.runs] or own.score != half.score
    sha = own.submission.sha256[:16]
    assert (
        len([d for d in set(cache.iterdir()) - before if d.name.startswith(sha)]) == 2
    )  # one folder of runs per set of values
    # The same values from best.json are the same runs and the same result, served from the cache.
    again = score_submission(
        compose_config("score", [*SCORE, f"params_file={best}"], tmp_path / "file"), FILE, tmp_path / "file"
    )
    assert again.params.file == str(best) and again.score == half.score and again.runs == half.runs
