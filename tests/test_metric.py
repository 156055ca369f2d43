"""challenge.scoring.metric against the published scorer's own numbers, a slow reference, and properties.

The fixtures (tests/fixtures/epsilon_public.npz) were produced by the competition's published
scorer; `slow_epsilons` below is a plain transcription of that definition (every model compared
with every threshold), used to check the fast path on inputs the fixtures do not cover.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from challenge.scoring.metric import (
    ForgettingResult,
    cross_entropy_losses,
    evaluate_forgetting,
    final_score,
    forget_score,
    logit_scaled_confidence,
    membership_inference_audit,
    per_example_epsilon,
)

FIXTURES = np.load(Path(__file__).parent / "fixtures" / "epsilon_public.npz")
N_CASES = 7


# --------------------------------------------------------------------------- slow reference


def _rates(predicted_positive: np.ndarray) -> np.ndarray:
    """Float32 count / N over models: the published scorer's float32 torch means, rounded once."""
    return predicted_positive.sum(axis=0).astype(np.float32) / np.float32(len(predicted_positive))


def slow_epsilons(unlearned: np.ndarray, retrained: np.ndarray, delta: float = 1e-5) -> np.ndarray:
    """The published definition, one example at a time, every model against every threshold.

    Returns NaN where the published code fails (every rule discarded).
    """
    out = np.empty(unlearned.shape[1])
    for e in range(unlearned.shape[1]):
        u, r = unlearned[:, e], retrained[:, e]
        pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
        dp, dn = np.ptp(pos), np.ptp(neg)
        with np.errstate(invalid="ignore", divide="ignore"):
            if min(dp, dn) / max(dp, dn) < 0.01:
                out[e] = 50.0
                continue
        # single thresholds: torch.linspace over the joint range, 100 per unit (float32 values)
        lo, hi = min(pos.min(), neg.min()), max(pos.max(), neg.max())
        t = torch.linspace(
            torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64), int(np.ceil((hi - lo) * 100))
        )
        t = t.numpy().astype(np.float64)
        fpr = [_rates(neg[:, None] >= t)]
        fnr = [_rates(pos[:, None] < t)]
        # double thresholds: the peakier side (ties: neg) is predicted inside [left, right]
        peaky, other = (neg, pos) if dp >= dn else (pos, neg)
        w = dn if dp > dn else dp
        lo_r, hi_r = peaky.min() + w - 2.0, peaky.max() + 2.0
        right = np.linspace(lo_r, hi_r, int(np.ceil((hi_r - lo_r) * 100)))
        left = np.stack([np.linspace(tr - w - 2.0, tr - w + 2.0, 400) for tr in right]).ravel()
        right = np.repeat(right, 400)
        fpr.append(_rates((left <= other[:, None]) & (other[:, None] <= right)))
        fnr.append(_rates(~((left <= peaky[:, None]) & (peaky[:, None] <= right))))
        fpr, fnr = np.concatenate(fpr), np.concatenate(fnr)
        with np.errstate(invalid="ignore", divide="ignore"):
            t1 = np.log(1 - delta - fpr) - np.log(fnr)
            t2 = np.log(1 - delta - fnr) - np.log(fpr)
        eps = np.clip(np.fmax(t1, t2), 0, None)
        eps[(fpr == 0) & (fnr == 0)] = np.inf
        eps[(fpr == 0) ^ (fnr == 0)] = np.nan
        kept = eps[~np.isnan(eps)]
        out[e] = min(kept.max(), 50.0) if kept.size else np.nan
    return out


def grid_size(unlearned: np.ndarray, retrained: np.ndarray) -> np.ndarray:
    """Right ends of each example's double-threshold grid: 400, or 401 when rounding says so."""
    out = []
    for u, r in zip(unlearned.T, retrained.T):
        pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
        peaky = neg if np.ptp(pos) >= np.ptp(neg) else pos
        w = np.ptp(peaky)
        out.append(int(np.ceil(((peaky.max() + 2.0) - ((peaky.min() + w) - 2.0)) * 100)))
    return np.array(out)


def draw(seed: int, n: int, k: int, shift: float = 0.5, decimals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normal confidences with per-example locations and spreads; rounded to make ties."""
    rng = np.random.default_rng(seed)
    loc, spread = rng.normal(0, 3, k), rng.uniform(0.3, 2, k)
    u = rng.normal(loc + shift * rng.normal(size=k), spread, (n, k))
    r = rng.normal(loc, spread * rng.uniform(0.5, 2, k), (n, k))
    return (u, r) if decimals is None else (np.round(u, decimals), np.round(r, decimals))


def evaluate(u: np.ndarray, r: np.ndarray, **kw) -> ForgettingResult:
    accs = dict(
        retain_acc_unlearned=[0.9, 0.8],
        retain_acc_retrained=[0.95],
        test_acc_unlearned=[0.7],
        test_acc_retrained=[0.8, 0.6],
    )
    return evaluate_forgetting(u, r, **{**accs, **kw})


# --------------------------------------------------------------------------- the published scorer's numbers


@pytest.mark.parametrize("case", range(N_CASES))
def test_fixture_epsilons_and_forget_score(case: int) -> None:
    u, r = FIXTURES[f"c{case}_unlearned"], FIXTURES[f"c{case}_retrained"]
    eps = per_example_epsilon(u, r)
    assert np.abs(eps - FIXTURES[f"c{case}_epsilons"]).max() <= 1e-4
    assert forget_score(eps, u.shape[0]) == FIXTURES[f"c{case}_forget_score"]


def test_fixture_confidences() -> None:
    logits, targets = FIXTURES["conf_logits"], FIXTURES["conf_targets"]
    conf = logit_scaled_confidence(logits, targets)
    assert conf.dtype == np.float64
    assert np.abs(conf - FIXTURES["conf_values"]).max() <= 1e-9
    floor = -math.log(1e-45)  # the 1e-45 floor inside both logs bounds the scale at about 103.6
    assert np.abs(conf).max() <= floor + 1e-9
    assert np.count_nonzero(np.abs(np.abs(conf[:20]) - floor) < 1e-6) >= 15  # extreme rows saturate


def test_confidence_is_finite_for_extreme_logits_and_leaves_input_alone() -> None:
    logits = np.array([[1e308, -1e308, 0.0], [-1e308, 1e308, 5.0], [0.0, 0.0, 0.0], [800.0, -800.0, 0.0]])
    before = logits.copy()
    conf = logit_scaled_confidence(logits, np.array([0, 0, 2, 1]))
    assert np.isfinite(conf).all()
    assert conf[0] == pytest.approx(-math.log(1e-45)) and conf[1] == pytest.approx(math.log(1e-45))
    assert conf[2] == pytest.approx(math.log(1 / 3) - math.log(2 / 3))
    np.testing.assert_array_equal(logits, before)
    torch_conf = logit_scaled_confidence(torch.from_numpy(logits), torch.tensor([0, 0, 2, 1]))
    np.testing.assert_array_equal(torch_conf, conf)


def test_cross_entropy_losses_match_torch() -> None:
    rng = np.random.default_rng(0)
    logits, targets = rng.normal(0, 5, (50, 7)), rng.integers(0, 7, 50)
    want = torch.nn.functional.cross_entropy(
        torch.from_numpy(logits), torch.from_numpy(targets), reduction="none"
    ).numpy()
    np.testing.assert_allclose(cross_entropy_losses(logits, targets), want, rtol=1e-12)


# --------------------------------------------------------------------------- fast path = slow reference


@pytest.mark.parametrize(("case", "examples"), [(2, slice(0, 6)), (3, slice(0, 6)), (4, slice(0, 3)), (6, slice(0, 1))])
def test_slow_reference_reproduces_fixtures(case: int, examples: slice) -> None:
    """The reference used below is itself the published definition."""
    u, r = FIXTURES[f"c{case}_unlearned"][:, examples], FIXTURES[f"c{case}_retrained"][:, examples]
    np.testing.assert_array_equal(slow_epsilons(u, r), FIXTURES[f"c{case}_epsilons"][examples])


@pytest.mark.parametrize("decimals", [None, 1, 2])
def test_fast_path_equals_slow_reference(decimals: int | None) -> None:
    u, r = draw(seed=3, n=7, k=12, decimals=decimals)
    np.testing.assert_array_equal(per_example_epsilon(u, r), slow_epsilons(u, r))


def test_torch_tensors_are_accepted() -> None:
    u, r = draw(seed=4, n=5, k=6)
    np.testing.assert_array_equal(
        per_example_epsilon(torch.from_numpy(u), torch.from_numpy(r)), per_example_epsilon(u, r)
    )


def test_fast_path_equals_slow_reference_on_401_right_ends() -> None:
    """Rounding gives some examples 401 right ends: a finer lattice with its own shortcut."""
    u, r = draw(seed=11, n=9, k=600, shift=0.2, decimals=2)
    pick = np.flatnonzero(grid_size(u, r) == 401)[:12]
    assert len(pick) >= 6
    np.testing.assert_array_equal(per_example_epsilon(u[:, pick], r[:, pick]), slow_epsilons(u[:, pick], r[:, pick]))


ON_A_THRESHOLD = [  # found by searching random draws; the slow reference gives 0.693, 1.099, 1.609
    (
        [0.875126400440678, 2.2486696827315567, 0.05949512777903598],
        [-0.10198831692963319, -0.09254757614893165, 0.06170719777018417],
    ),
    (
        [1.25975206992725, 0.320926438761408, 1.0626074054655392, 1.2757440083766303],
        [0.07761005473832791, 0.08436738821800595, 0.2890186969340708, 0.3216663201452094],
    ),
    (
        [
            0.8234329266716264,
            0.8308015913025198,
            0.8936794282721233,
            1.0026186049779928,
            1.0293881341984998,
            1.030405284261609,
        ],
        [
            0.7391654156332255,
            1.251649539265422,
            -0.5120737362559833,
            -1.2669605172616674,
            -0.8009473891174244,
            0.922952839637978,
        ],
    ),
]


@pytest.mark.parametrize(("unlearned", "retrained"), ON_A_THRESHOLD)
def test_data_on_a_threshold_up_to_rounding(unlearned: list[float], retrained: list[float]) -> None:
    """The peaky minimum sits on a left end up to rounding; which side it falls on changes epsilon here."""
    u, r = np.array(unlearned)[:, None], np.array(retrained)[:, None]
    np.testing.assert_array_equal(per_example_epsilon(u, r), slow_epsilons(u, r))


# --------------------------------------------------------------------------- properties


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(3, 12),
    k=st.integers(1, 4),
    shift=st.floats(0, 3),
    decimals=st.sampled_from([None, 1, 2]),
)
def test_epsilon_properties(seed: int, n: int, k: int, shift: float, decimals: int | None) -> None:
    u, r = draw(seed, n, k, shift, decimals)
    eps = per_example_epsilon(u, r)
    assert ((eps >= 0) & (eps <= 50)).all()
    # F as the rule states it: 1 point below 0.5, halving every 0.5 of epsilon, none past 2 * ceil(log(n - 1)) buckets
    buckets = 2 * math.ceil(math.log(n - 1))
    f = forget_score(eps, n)
    assert f == pytest.approx(sum(2.0 ** -math.floor(2 * e) if 2 * e < buckets else 0.0 for e in eps) / len(eps))
    assert forget_score(eps + 0.5, n) <= f / 2  # one bucket worse everywhere: at most half the points
    # the two medians decide which side is 'positive'; otherwise the roles are symmetric
    differ = np.median(u, axis=0) != np.median(r, axis=0)
    np.testing.assert_array_equal(per_example_epsilon(r, u)[differ], eps[differ])
    # every grid rule's counts are reached by some rule at observed values: a superset, same scoring
    assert (per_example_epsilon(u, r, thresholds="exact") >= eps).all()


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(5, 40), gap=st.floats(20, 60))
def test_identical_distributions_score_higher_than_separated(seed: int, n: int, gap: float) -> None:
    rng = np.random.default_rng(seed)
    loc = rng.normal(0, 3, 20)
    same = forget_score(per_example_epsilon(rng.normal(loc, 1, (n, 20)), rng.normal(loc, 1, (n, 20))), n)
    apart = forget_score(per_example_epsilon(rng.normal(loc + gap, 1, (n, 20)), rng.normal(loc, 1, (n, 20))), n)
    assert apart == 0.0  # perfectly separated: every example is capped
    assert same > apart


def test_identical_constants_give_zero_and_one_constant_side_the_cap() -> None:
    """All 2N values equal: every rule is discarded (the published code crashes); we call it 0."""
    sat = np.full((5, 2), 103.61632918473206)
    spread = sat - np.linspace(0, 1, 5)[:, None]
    np.testing.assert_array_equal(per_example_epsilon(sat, sat), [0.0, 0.0])
    np.testing.assert_array_equal(per_example_epsilon(sat, spread), [50.0, 50.0])  # spreads differ > 100x


def test_forget_score_buckets() -> None:
    # N = 3: ceil(log 2) = 1, so two buckets: [0, 0.5) earns 1, [0.5, 1) earns 1/2, beyond earns 0
    assert forget_score([0.0, 0.49, 0.5, 0.99, 1.0, 50.0], 3) == pytest.approx((1 + 1 + 0.5 + 0.5) / 6)
    # N = 512: 14 buckets, the last [6.5, 7) earns 2**-13
    assert forget_score([6.75], 512) == 2.0**-13 and forget_score([7.0], 512) == 0.0


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("unlearned", "retrained", "message"),
    [
        (np.zeros((2, 4)), np.zeros((2, 4)), "unlearned has 2 models; the metric needs at least 3"),
        (np.zeros((5, 4)), np.zeros((5, 3)), "unlearned has 4 examples but retrained has 3"),
        (
            np.zeros((5, 4)),
            np.zeros((6, 4)),
            "unlearned has 5 models but retrained has 6; the published scorer assumes",
        ),
        (np.zeros((5, 4)), np.full((5, 4), np.nan), "retrained contains 20 NaN or infinite values"),
        (np.full((5, 4), np.inf), np.zeros((5, 4)), "unlearned contains 20 NaN or infinite values"),
        (np.zeros(5), np.zeros(5), r"unlearned must be a 2-D array \[models, examples\]; got 1-D"),
        (np.zeros((5, 4)), np.full((5, 4), 1e6), "retrained has values up to 1e\\+06"),
    ],
)
def test_bad_confidences_are_named(unlearned: np.ndarray, retrained: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        per_example_epsilon(unlearned, retrained)


def test_bad_options_are_named() -> None:
    u = np.zeros((4, 2))
    with pytest.raises(ValueError, match="thresholds must be one of"):
        per_example_epsilon(u, u, thresholds="fine")
    with pytest.raises(ValueError, match="delta must lie in"):
        per_example_epsilon(u, u, delta=0.0)
    with pytest.raises(ValueError, match="retain_acc_retrained must be a non-empty array of per-model accuracies"):
        evaluate(u, u, retain_acc_retrained=[1.5], n_bootstrap=0)
    with pytest.raises(ValueError, match="retain accuracy of the retrained models must be positive"):
        final_score(0.5, 0.9, 0.0, 0.8, 0.8)


# --------------------------------------------------------------------------- the scorer's entry point


def test_result_holds_every_term_and_serialises() -> None:
    u, r = draw(seed=5, n=6, k=8)
    res = evaluate(u, r, n_bootstrap=5)
    assert res.forget_quality == forget_score(per_example_epsilon(u, r), 6)
    assert res.retain_acc_unlearned == pytest.approx(0.85) and res.test_acc_retrained == pytest.approx(0.7)
    assert res.final_score == pytest.approx(res.forget_quality * (0.85 / 0.95) * (0.7 / 0.7))
    assert res.retain_ratio == pytest.approx(0.85 / 0.95)
    assert (res.n_models, res.n_examples, res.thresholds) == (6, 8, "grid")
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.forget_quality = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        res.epsilons[0] = 0.0
    d = json.loads(json.dumps(res.to_dict()))
    assert d["epsilons"] == res.epsilons.tolist() and d["forget_quality_ci"] == list(res.forget_quality_ci)
    assert evaluate(u, r, n_bootstrap=0).forget_quality_ci is None


def test_bootstrap_interval_is_seeded_and_contains_f() -> None:
    u, r = draw(seed=7, n=16, k=20, shift=1.0)
    a, b, c = (evaluate(u, r, n_bootstrap=25, seed=s) for s in (1, 1, 2))
    assert a.forget_quality_ci == b.forget_quality_ci
    assert a.forget_quality_ci != c.forget_quality_ci
    low, high = a.forget_quality_ci
    assert low < a.forget_quality < high


def test_bootstrap_interval_narrows_with_more_models() -> None:
    """With distributions that differ, more models pin each epsilon down (same K, same seed)."""

    def width(n: int) -> float:
        rng = np.random.default_rng(0)
        loc = rng.normal(0, 2, 20)
        low, high = evaluate(
            rng.normal(loc + 1.0, 1, (n, 20)), rng.normal(loc, 1, (n, 20)), n_bootstrap=25
        ).forget_quality_ci
        return high - low

    assert width(128) < 0.7 * width(16)


# --------------------------------------------------------------------------- membership inference


def test_membership_inference_audit() -> None:
    rng = np.random.default_rng(0)
    forget, test = rng.exponential(1.0, 400), rng.exponential(1.0, 300)
    same = membership_inference_audit(forget, test)
    assert abs(same - 0.5) < 0.08
    assert membership_inference_audit(forget, test) == same  # seeded subsampling and folds
    assert membership_inference_audit(rng.normal(0.1, 0.05, 200), rng.normal(3.0, 0.5, 300)) > 0.97
    with pytest.raises(ValueError, match="at least n_splits"):
        membership_inference_audit(np.ones(3), np.ones(50))
    with pytest.raises(ValueError, match="forget_losses contains 10 NaN"):
        membership_inference_audit(np.array([1.0, np.nan] * 10), np.ones(50))
