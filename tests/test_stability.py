"""Rankings across splits: Kendall's τ-b, the table, and a real `challenge baseline` multirun."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau

from challenge.errors import ChallengeError
from challenge.files import write_json
from challenge.reports.stability import (
    LEADERBOARD_FILE,
    kendall_tau,
    read_splits,
    split_record,
    stability,
    stability_table,
)
from challenge.scoring.result import Ceiling
from challenge.scoring.row import LeaderboardRow
from tests.conftest import TINY, run_cli


def test_kendall_tau_b_matches_scipy_with_and_without_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(3, 10))
        a, b = rng.integers(0, 4, n).astype(float), rng.integers(0, 4, n).astype(float)  # many ties
        expected = kendalltau(a, b).statistic
        got = kendall_tau(list(a), list(b))
        assert (got is None and np.isnan(expected)) or got == pytest.approx(expected, abs=1e-12)
    assert kendall_tau([3.0, 2.0, 1.0], [30.0, 20.0, 10.0]) == 1.0
    assert kendall_tau([3.0, 2.0, 1.0], [10.0, 20.0, 30.0]) == -1.0
    assert kendall_tau([1.0], [1.0]) is None


def _split(folder: Path, seed: int, scores: dict[str, float | None]) -> Path:
    ceiling = Ceiling(0.5 + seed / 100, None, 0.5, 16, 30, "pool")
    rows = [
        LeaderboardRow(
            n,
            "scored" if s is not None else "crashed",
            final_score=s,
            forget_quality=None if s is None else s * 2,
            ceiling=ceiling,
        )
        for n, s in sorted(scores.items(), key=lambda kv: -(kv[1] or -1))
    ]
    folder.mkdir(parents=True)
    write_json(
        folder / LEADERBOARD_FILE,
        split_record(["experiment=tiny", f"data.split.seed={seed}"], seed, f"pool{seed}", rows, 10.0),
    )
    return folder


def test_the_table_ranks_each_split_and_tau_compares_their_orders(tmp_path: Path) -> None:
    a = _split(tmp_path / "0", 0, {"salun": 0.4, "finetune": 0.2, "do_nothing": 0.0, "scrub": 0.3})
    b = _split(tmp_path / "1", 1, {"salun": 0.3, "finetune": 0.1, "do_nothing": 0.0, "scrub": 0.35})
    c = _split(
        tmp_path / "2", 2, {"salun": 0.1, "finetune": 0.2, "do_nothing": 0.0, "scrub": None}
    )  # scrub crashed here
    splits = read_splits([a, b, c])
    assert [s["label"] for s in splits] == [
        "data.split.seed=0",
        "data.split.seed=1",
        "data.split.seed=2",
    ]  # the common override is left out
    st = stability(splits)
    by = {m["name"]: m for m in st["methods"]}
    assert [p["rank"] if p else None for p in by["scrub"]["per_split"]] == [2, 1, None]
    assert by["salun"]["rank_mean"] == pytest.approx(5 / 3) and by["salun"]["rank_range"] == [1, 2]
    assert by["finetune"]["f_mean"] == pytest.approx((0.4 + 0.2 + 0.4) / 3)
    assert by["finetune"]["f_sd"] == pytest.approx(np.std([0.4, 0.2, 0.4], ddof=1))
    assert [m["name"] for m in st["methods"]] == ["scrub", "salun", "finetune", "do_nothing"]  # best mean rank first
    pairs = {(p["a"], p["b"]): p for p in st["tau"]["pairs"]}
    # splits 0 and 1 swap salun and scrub, one discordant pair of six: τ = (5 - 1) / 6
    assert pairs[("data.split.seed=0", "data.split.seed=1")]["tau"] == pytest.approx(4 / 6)
    # split 2 swaps salun and finetune, and has no scrub: τ over three methods, (2 - 1) / 3
    assert pairs[("data.split.seed=0", "data.split.seed=2")] == {
        "a": "data.split.seed=0",
        "b": "data.split.seed=2",
        "tau": pytest.approx(1 / 3),
        "n_methods": 3,
    }
    assert st["tau"]["mean"] == pytest.approx((4 / 6 + 1 / 3 + 1 / 3) / 3)
    assert st["tau"]["min"] == pytest.approx(1 / 3)
    text = stability_table(st)
    assert "Kendall's τ, all methods: mean 0.44, min 0.33" in text
    assert "(ceiling F)" in text and "0.510" in text


def test_the_leaderboard_over_splits_separates_only_what_every_split_supports_and_shows_ties() -> None:
    """Four splits. best is 0.1 above the rest on each split; mid beats low by 0.01 on every split (a constant,
    tiny difference: separated); noisy differs from mid and from low by up to ±0.05 from split to split (not
    separated from either), so only best is above it: it shares mid's rank although low, whose mean is higher,
    ranks 3. partial was scored on two splits only (it crashed on the others): listed last, unranked."""
    from challenge.reports.over_splits import format_over_splits, over_splits

    finals = {
        "noisy": [0.05, -0.03, 0.07, -0.02],
        "partial": [0.9, None, 0.9, None],
        "low": [0.03, 0.02, 0.03, 0.02],
        "best": [0.14, 0.13, 0.15, 0.12],
        "mid": [0.04, 0.03, 0.04, 0.03],
    }
    rows = over_splits(finals)
    assert [(r["name"], r["rank_text"]) for r in rows] == [
        ("best", "1"),
        ("mid", "=2"),
        ("low", "3"),
        ("noisy", "=2"),
        ("partial", "—"),
    ]
    best = rows[0]
    half = 3.182446305284263 * np.std(finals["best"], ddof=1) / 2  # t(0.975, 3) × sd / √4
    assert best["final_mean"] == pytest.approx(0.135)
    assert best["final_ci"] == pytest.approx([0.135 - half, 0.135 + half])
    assert rows[2]["diff_ci_to_above"] == pytest.approx([0.01, 0.01])  # mid − low, the same on every split
    assert rows[3]["tied_with_above"] and rows[3]["diff_ci_to_above"][0] < 0 < rows[3]["diff_ci_to_above"][1]
    assert [r["separated_below"] for r in rows[:4]] == [[], ["best"], ["best", "mid"], ["best"]]
    assert over_splits({"a": [0.1, 0.1], "b": [0.1, 0.1]})[1]["rank_text"] == "=1"  # equal scores: a tie, not an order
    text = format_over_splits(rows, 4)
    assert "Over 4 splits" in text and "   3  low" in text and "  =2  noisy" in text and "   —  partial" in text


def test_differences_that_agree_more_closely_than_each_splits_noise_allows_do_not_separate() -> None:
    """The default set's case: random_label beat scrub by 0.0119, 0.0109, 0.0131 on three splits (t interval
    [0.009, 0.015]) and lost on two of three others; each final score's standard error on its split was about
    0.005, so the difference's spread cannot be 0.001: with the splits' own noise the pair is not separated."""
    from challenge.reports.over_splits import over_splits, separated

    a, b = [0.0519, 0.0509, 0.0531], [0.04, 0.04, 0.04]
    assert separated(a, b) == (True, pytest.approx([0.0092, 0.0147], abs=1e-4))
    apart, ci = separated(a, b, [0.005] * 3, [0.005] * 3)
    half = 4.302652729911275 * np.sqrt(2 * 0.005**2) / np.sqrt(3)  # t(0.975, 2) × the floor / √3
    assert not apart and ci == pytest.approx([0.0120 - half, 0.0120 + half], abs=1e-4)
    noisy = over_splits({"a": a, "b": b}, {"a": [0.005] * 3, "b": [0.005] * 3})
    assert [r["rank_text"] for r in noisy] == ["=1", "=1"]
    assert [r["rank_text"] for r in over_splits({"a": a, "b": b})] == ["1", "2"]


def test_fewer_than_two_splits_or_a_folder_without_a_leaderboard_is_one_clear_error(tmp_path: Path) -> None:
    a = _split(tmp_path / "0", 0, {"salun": 0.4, "finetune": 0.2})
    with pytest.raises(ChallengeError, match="at least two splits.*data.split.seed=0,1,2"):
        stability(read_splits([a]))
    with pytest.raises(ChallengeError, match=f"no {LEADERBOARD_FILE} in .*nowhere.*finished `challenge baseline` run"):
        read_splits([a, tmp_path / "nowhere"])


@pytest.mark.slow  # two splits' originals, pools and scorings: about two minutes here
def test_a_baseline_multirun_over_split_seeds_writes_the_stability_table(tmp_path: Path) -> None:
    """Two splits in two joblib processes, each with its own original and pool; the callback in
    the launching process gathers them. Each split's row equals what its own result.json says."""
    sweep = tmp_path / "sweep"
    r = run_cli(
        "baseline",
        "-m",
        *TINY,
        "data.split.seed=0,1",
        "baselines.methods=[do_nothing,finetune,random_label]",
        "workers=1",
        "scorer.budget_seconds=120",
        "scorer.n_bootstrap=20",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
        env={"CHALLENGE_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    st = json.loads((sweep / "stability.json").read_text())
    assert [s["label"] for s in st["splits"]] == ["data.split.seed=0", "data.split.seed=1"]
    assert st["splits"][0]["pool"] != st["splits"][1]["pool"]  # each split its own original and pool
    assert len(list((tmp_path / "cache" / "pools").iterdir())) == 2
    for i, split in enumerate(("0", "1")):
        for m in st["methods"]:
            result = json.loads((sweep / split / m["name"] / "result.json").read_text())
            assert m["per_split"][i]["forget_quality"] == result["score"]["forget_quality"]
            assert m["per_split"][i]["final_score"] == result["score"]["final_score"]
    assert sorted(m["name"] for m in st["methods"]) == ["do_nothing", "finetune", "random_label"]
    assert st["multirun_seconds"] > 0
    assert "Kendall's τ, all methods" in r.stdout and "rank mean (range)" in r.stdout
    page = (sweep / "stability.html").read_text()
    assert '<pre id="stability">' in page and "data:image/png;base64," in page


def test_tau_among_the_top_five_leaves_out_a_swap_below_them(tmp_path: Path) -> None:
    names = [f"m{i}" for i in range(1, 7)]
    a = _split(tmp_path / "0", 0, dict(zip(names, [6.0, 5.0, 4.0, 3.0, 2.0, 1.0])))
    b = _split(tmp_path / "1", 1, dict(zip(names, [6.0, 5.0, 4.0, 3.0, 1.0, 2.0])))  # m5 and m6 swap, sixth and fifth
    st = stability(read_splits([a, b]))
    assert st["top"] == ["m1", "m2", "m3", "m4", "m5"]  # m5 and m6 tie on mean rank 5.5: by name
    assert st["tau_top"]["mean"] == 1.0  # m5 is last of the five in both
    assert st["tau"]["mean"] == pytest.approx(13 / 15)


def test_the_stability_command_reads_a_sweep_folder_or_runs_and_refuses_a_folder_without_a_leaderboard(
    tmp_path: Path,
) -> None:
    sweep = tmp_path / "sweep"
    for seed, order in enumerate(([0.4, 0.2, 0.0], [0.3, 0.2, 0.1])):
        _split(sweep / str(seed), seed, dict(zip(["salun", "finetune", "do_nothing"], order)))
    r = run_cli("stability", str(sweep), "--out", str(tmp_path / "table"), f"hydra.run.dir={tmp_path}/run")
    assert r.returncode == 0, r.stderr
    assert "Kendall's τ, all methods: mean 1.00" in r.stdout
    st = json.loads((tmp_path / "table" / "stability.json").read_text())
    assert [m["name"] for m in st["methods"]] == ["salun", "finetune", "do_nothing"]

    r = run_cli("stability", str(sweep / "0"), str(tmp_path / "empty"), f"hydra.run.dir={tmp_path}/run")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: no {LEADERBOARD_FILE} in {tmp_path / 'empty'}: each folder must be a finished `challenge baseline` run"
    ]
