"""The per-example attacks beside F (challenge.scoring.attacks), F per memorisation stratum, and the agreement
table, on synthetic confidences whose answer is known: identical sides sit at chance, shifted sides are
detected, more shift is detected more, the same seed gives the same bits, bad input is one line."""

from __future__ import annotations

import re

import numpy as np
import pytest

from challenge.errors import ChallengeError
from challenge.reports.agreement import agreement, agreement_table
from challenge.scoring.attacks import (
    ATTACKS,
    attacks,
    auc,
    auc_fold_chance,
    check_attacks,
    klom,
    memorisation_groups,
    strata,
    ulira_accuracy,
)
from challenge.scoring.metric import evaluate_forgetting, replicate_scores
from challenge.scoring.resampling import Resamples, replicate_means
from challenge.scoring.row import LeaderboardRow
from challenge.scoring.settings import Settings
from tests.conftest import compose_config

N, K = 16, 90


def _sides(shift: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """[N, K] unlearned and retrained confidences: per-example locations, the unlearned side moved by `shift` sds."""
    rng = np.random.default_rng(seed)
    loc, sd = rng.normal(2, 3, K), rng.uniform(0.5, 2.0, K)
    return rng.normal(loc + shift * sd, sd, (N, K)), rng.normal(loc, sd, (N, K))


def _metric(u: np.ndarray, r: np.ndarray, n_bootstrap: int = 30, seed: int = 0, groups: np.ndarray | None = None):
    acc = [0.9] * len(u)
    return evaluate_forgetting(
        u,
        r,
        retain_acc_unlearned=acc,
        retain_acc_retrained=acc,
        test_acc_unlearned=acc,
        test_acc_retrained=acc,
        n_bootstrap=n_bootstrap,
        seed=seed,
        groups=groups,
    )


@pytest.fixture(scope="module")
def by_shift() -> dict[float, tuple]:
    """The attacks and F at four shifts, computed once for the module."""
    out = {}
    for shift in (0.0, 0.5, 1.0, 3.0):
        u, r = _sides(shift)
        res = _metric(u, r)
        out[shift] = (attacks(u, r, ATTACKS, res), res)
    return out


def test_identical_distributions_sit_at_chance_and_f_near_its_ceiling(by_shift: dict) -> None:
    a, res = by_shift[0.0]
    assert abs(a.ulira.balanced_accuracy - 0.5) < 0.03 and abs(a.ulira.auc - 0.5) < 0.03
    assert a.ulira.balanced_accuracy_ci[0] < 0.5 < a.ulira.balanced_accuracy_ci[1]
    assert a.ulira.tpr_at_fpr["0.05"] < 0.08  # at chance the TPR is about the FPR
    assert abs(a.auc.mean_fold - a.auc.chance) < 0.02 and a.auc.chance == pytest.approx(0.5827, abs=1e-4)
    assert a.klom.mean < 0.25 and a.klom.median < 0.25
    # F of retraining against retraining at this N: what the shifted sides are measured against
    ceiling = _metric(*_sides(0.0, seed=1)[::-1]).forget_quality
    assert res.forget_quality > 0.13 and abs(res.forget_quality - ceiling) < 0.04


def test_shifted_distributions_are_detected_and_more_shift_is_detected_more(by_shift: dict) -> None:
    a, res = by_shift[3.0]
    assert a.ulira.balanced_accuracy > 0.9 and a.ulira.auc > 0.95 and a.ulira.tpr_at_fpr["0.01"] > 0.4
    assert a.klom.mean > 1.5 and a.auc.mean_fold > 0.97 and res.forget_quality < 0.05
    shifts = sorted(by_shift)
    for key in (lambda a: a.ulira.balanced_accuracy, lambda a: a.klom.mean, lambda a: a.auc.mean_fold):
        values = [key(by_shift[s][0]) for s in shifts]
        assert values == sorted(values) and len(set(values)) == len(values), values
    fs = [by_shift[s][1].forget_quality for s in shifts]
    assert fs == sorted(fs, reverse=True)
    # the smallest shift fails the chance test's tolerances (0.03 for U-LiRA, 0.02 for the AUC fold)
    smallest = by_shift[0.5][0]
    assert smallest.ulira.balanced_accuracy - 0.5 > 0.03 and smallest.auc.mean_fold - smallest.auc.chance > 0.02


def test_identical_arrays_give_exactly_chance() -> None:
    u, _ = _sides(0.0)
    assert np.all(klom(u, u.copy()) == 0.0) and np.all(ulira_accuracy(u, u.copy()) == 0.5)
    assert np.all(auc(u, u.copy()) == 0.5)
    tied = np.full((N, 3), 103.6)  # saturated confidences: every model the same on both sides
    assert np.all(klom(tied, tied) == 0.0) and np.all(ulira_accuracy(tied, tied) == 0.5)


def test_auc_is_mann_whitney_with_ties_counted_half() -> None:
    rng = np.random.default_rng(3)
    p, q = rng.normal(0, 1, (7, 5)).round(1), rng.normal(0, 1, (9, 5)).round(1)  # rounded: many ties
    brute = [
        (np.sum(p[:, c, None] > q[None, :, c]) + 0.5 * np.sum(p[:, c, None] == q[None, :, c])) / 63 for c in range(5)
    ]
    assert np.allclose(auc(p, q), brute) and auc_fold_chance(16) > auc_fold_chance(512) > 0.5


def test_the_same_seed_gives_the_same_bits_and_another_seed_another_interval() -> None:
    u, r = _sides(1.0)
    first, again = (attacks(u, r, ATTACKS, _metric(u, r, 15, seed=5)) for _ in range(2))
    other = attacks(u, r, ATTACKS, _metric(u, r, 15, seed=6))
    assert first == again and first.klom.mean == other.klom.mean and first.klom.mean_ci != other.klom.mean_ci


def test_attacks_share_fs_bootstrap_which_keeps_its_bits() -> None:
    """replicate_scores is replicate_means of the points: the same F replicates as the metric's interval."""
    u, r = _sides(1.0)
    res = _metric(u, r, n_bootstrap=10, seed=2)
    draws = Resamples.seeded(2, N, K, 10)
    assert np.array_equal(replicate_scores(u, r, draws, res.delta, res.thresholds), res.replicates)
    means = replicate_means(u, r, draws, lambda a, b: np.stack([klom(a, b), auc(a, b)]))
    assert means.shape == (10, 2) and np.all(means[:, 0] > 0)


def test_strata_split_by_memorisation_and_report_f_in_each() -> None:
    """Examples the original memorised more are those left unforgotten: F falls from the low to the high tercile."""
    u, r = _sides(0.0)
    memorised = np.arange(K) >= 2 * K // 3  # the last third keeps the original's trace
    u[:, memorised] += 3 * r[:, memorised].std(axis=0)
    original = r.mean(axis=0) + np.where(memorised, 5.0, np.linspace(0, 1, K))
    res = _metric(u, r)
    st = strata(u, r, original, res)
    assert [s.name for s in st.strata] == ["low", "mid", "high"] and [s.n_examples for s in st.strata] == [K // 3] * 3
    low, mid, high = st.strata
    assert low.memorisation[1] <= mid.memorisation[0] and mid.memorisation[1] <= high.memorisation[0]
    assert high.forget_quality < 0.05 < low.forget_quality and high.forget_quality_ci[1] < low.forget_quality_ci[0]
    assert np.mean([s.forget_quality for s in st.strata]) == pytest.approx(res.forget_quality)
    assert strata(u, r, None, res) is None
    # Given the groups, F's own bootstrap pass gives the strata's intervals: the same bits, F's untouched.
    shared = _metric(u, r, groups=memorisation_groups(original, r))
    assert shared.group_replicates.shape == (30, 3) and np.array_equal(shared.replicates, res.replicates)
    assert strata(u, r, original, shared) == st and shared.forget_quality_ci == res.forget_quality_ci
    other = _metric(u, r, groups=np.arange(K) % 3)  # groups that are not the strata's: not used for them
    assert strata(u, r, original, other) == st


def test_an_unknown_attack_is_one_line_naming_the_valid_ones(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"^unknown attack 'lira': the attacks are ulira, klom, auc$"):
        check_attacks(["ulira", "lira"])
    cfg = compose_config("score", ["submission=x.py", "experiment=tiny", "scorer.attacks=[ulira,lira]"], tmp_path)
    with pytest.raises(ChallengeError) as e:
        Settings.from_config(cfg)
    assert str(e.value) == (
        "scorer.attacks=[ulira, lira] names lira, which is not one of ulira, klom, auc: "
        "pick among those, or [] for none"
    )
    for value, problem in (
        ("ulira", "is not a list: set it to a list of ulira, klom, auc (e.g. [ulira]), or [] for none"),
        ("[auc,auc]", "names auc twice: list each once"),
    ):
        cfg = compose_config("score", ["submission=x.py", "experiment=tiny", f"scorer.attacks={value}"], tmp_path)
        with pytest.raises(ChallengeError, match=rf"^scorer\.attacks=.* {re.escape(problem)}$"):
            Settings.from_config(cfg)
    cfg = compose_config("score", ["submission=x.py", "experiment=tiny", "scorer.attacks=[klom]"], tmp_path)
    assert Settings.from_config(cfg).attacks == ("klom",)


def test_mismatched_shapes_are_one_line() -> None:
    u, r = _sides(0.0)
    res = _metric(u, r, n_bootstrap=0)
    mismatch = rf"^unlearned has {K} examples but retrained has {K - 1}; both must score the same forget examples$"
    for call in (lambda: _metric(u, r[:, :-1]), lambda: attacks(u, r[:, :-1], ATTACKS, res)):
        with pytest.raises(ValueError, match=mismatch):
            call()
    with pytest.raises(ValueError, match=r"^unlearned has 15 models but retrained has 16; the published scorer"):
        strata(u[:-1], r, r.mean(axis=0), res)
    with pytest.raises(
        ValueError, match=rf"^original has forget confidences of shape \({K - 1},\); the models score {K} "
    ):
        strata(u, r, r.mean(axis=0)[:-1], res)


def test_the_agreement_table_ranks_by_each_metric() -> None:
    """Three methods: the attacks agree with F (tau 1), the final score reverses it (tau -1)."""
    rows = [
        LeaderboardRow(name, "scored", final_score=fs, forget_quality=f, ulira_accuracy=ul, klom=kl, auc_fold=au)
        for name, fs, f, ul, kl, au in (
            ("a", 0.1, 0.3, 0.55, 0.2, 0.6),
            ("b", 0.2, 0.2, 0.70, 0.5, 0.7),
            ("c", 0.3, 0.1, 0.90, 1.5, 0.9),
        )
    ]
    agree = agreement(rows)
    assert agree["metrics"] == ["final", "F", "U-LiRA", "KLoM", "AUC"] and agree["methods"] == ["a", "b", "c"]
    assert agree["tau_b"]["F"] == {"final": -1.0, "F": 1.0, "U-LiRA": 1.0, "KLoM": 1.0, "AUC": 1.0}
    table = agreement_table(agree).splitlines()
    assert table[0] == "Kendall's τ-b between rankings of 3 methods"
    assert table[2].split() == ["final", "1.00", "-1.00", "-1.00", "-1.00", "-1.00"]


def test_the_leaderboard_shows_each_rows_attacks_and_their_chance_levels_on_the_ceiling() -> None:
    """One cell per row (U-LiRA / KLoM / AUC), and on the ceiling's line the same attacks of retraining itself."""
    from challenge.reports.leaderboard import leaderboard_table, rank
    from challenge.scoring.result import Ceiling
    from tests.test_leaderboard import cell

    u, r = _sides(0.0)
    res = _metric(u, r, n_bootstrap=0)
    ceiling = Ceiling(res.forget_quality, None, res.final_score, N, K, "held out", attacks(u, r, ATTACKS, res))
    rows = [
        LeaderboardRow(
            "a", "scored", final_score=0.1, forget_quality=0.1, ulira_accuracy=0.61, klom=0.4, ceiling=ceiling
        ),
        LeaderboardRow("b", "scored", final_score=0.05, forget_quality=0.05, auc_fold=0.9, ceiling=ceiling),
    ]
    lines = leaderboard_table(rank(rows)).splitlines()
    a = ceiling.attacks
    chance = f"{a.ulira.balanced_accuracy:.2f} / {a.klom.mean:.2f} / {a.auc.mean_fold:.2f}"
    assert lines[0].endswith(f"(retrained vs retrained, N={N}, K={K}); U-LiRA / KLoM / AUC there (chance): {chance}")
    column = "U-LiRA / KLoM / AUC"
    assert (cell(lines, 1, column), cell(lines, 2, column)) == ("0.61 / 0.40 / —", "— / — / 0.90")


def test_the_report_page_says_each_methods_attacks_and_strata(tmp_path) -> None:
    from challenge.reports.leaderboard import rank, write_html
    from tests.results import make_result, metric_score

    u, r = _sides(1.0)
    result = make_result(metric_score(u[:4, :9], r[:4, :9]))
    page = write_html("t", rank([LeaderboardRow.from_result("m", result)]), {"m": result}, tmp_path / "r.html")
    text, a = page.read_text(), result.score.attacks
    assert f"U-LiRA bal. accuracy {a.ulira.balanced_accuracy:.3f} [" in text and "F by memorisation low " in text
