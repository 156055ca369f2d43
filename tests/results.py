"""Results as challenge.scoring.scorer makes them, for tests that need their shape but no sandbox: every
section filled the way a scoring fills it, the numbers given by the test or computed by the real metric."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from challenge.scoring.attacks import attacks, strata
from challenge.scoring.metric import evaluate_forgetting
from challenge.scoring.params import Params
from challenge.scoring.result import (
    Budget,
    Calibration,
    ConfidenceSamples,
    Examples,
    Leak,
    PoolInfo,
    Reference,
    Result,
    RunRow,
    Scenario,
    ScenarioFigure,
    Score,
    Submission,
)
from challenge.scoring.settings import ATTACKS, Settings

SETTINGS = Settings(
    n_runs=3,
    first_seed=0,
    budget_fraction=0.2,
    budget_seconds=None,
    budget_cap=3.0,
    wall_slack=3.0,
    calibration_steps=3,
    startup_seconds=60.0,
    memory_mb=None,
    file_size_mb=None,
    log_cap_bytes=100_000,
    n_bootstrap=20,
    isolation="none",
    threads=1,
    batch_size=64,
    eval_batch_size=256,
)


def make_score(**given: Any) -> Score:
    """A score with the given terms; the rest as a plain scoring on 3 models and 2 examples has them."""
    base: dict[str, Any] = dict(
        forget_quality=0.1,
        final_score=0.08,
        retain_acc_unlearned=0.9,
        retain_acc_retrained=0.95,
        test_acc_unlearned=0.85,
        test_acc_retrained=0.9,
        retain_ratio=0.9,
        test_ratio=0.95,
        n_models=3,
        n_examples=2,
        delta=1e-5,
        thresholds="grid",
        forget_quality_ci=None,
        ci_level=0.95,
        ci_method=None,
        n_bootstrap=20,
        seed=0,
        mia=0.5,
        mia_per_run=[0.5, 0.5, 0.5],
        mia_note="",
        ceiling=None,
    )
    return Score(**(base | given))


def metric_score(unlearned: np.ndarray, retrained: np.ndarray, n_bootstrap: int = 20, **given: Any) -> Score:
    """The real metric's terms on these confidences (accuracies 0.9 on both sides), as judge.score gives them."""
    acc = [0.9] * len(unlearned)
    res = evaluate_forgetting(
        unlearned,
        retrained,
        retain_acc_unlearned=acc,
        retain_acc_retrained=acc,
        test_acc_unlearned=acc,
        test_acc_retrained=acc,
        n_bootstrap=n_bootstrap,
    )
    terms = {k: v for k, v in res.to_dict().items() if k != "epsilons"}
    terms["attacks"] = attacks(unlearned, retrained, ATTACKS, res)
    terms["strata"] = strata(unlearned, retrained, retrained.mean(axis=0) + np.arange(retrained.shape[1]), res)
    return Score(**(terms | given), mia=0.5, mia_per_run=[0.5] * len(unlearned), mia_note="")


def make_result(
    score: Score, run_cost: tuple[float, ...] = (1.0, 1.2, 1.1), per_run: float = 5.0, **given: Any
) -> Result:
    """A scored result around `score`: runs, budget, examples, samples, reference and a leak, as a scoring has them."""
    n = len(run_cost)
    fractions = [c / per_run for c in run_cost]
    calibration = Calibration("cpu", 0.05, 3, 100, per_run / SETTINGS.budget_fraction)
    budget = Budget(
        per_run=per_run,
        rule="0.2 × retraining's cost",
        clock="cpu",
        cap=3.0,
        wall_slack=3.0,
        retrain_seconds=calibration.retrain_seconds,
        exempt=False,
        fraction=0.2,
        total=n * per_run,
        calibration=calibration,
        run_cost=list(run_cost),
        run_wall=[c + 0.5 for c in run_cost],
        run_kit=[0.03] * n,
        run_budget=[per_run] * n,
        run_fraction=fractions,
        outside_budgets=0.01,
        used_budgets=sum(fractions),
        enforced="the runs within budgets",
    )
    sandbox = {
        "isolation": "none",
        "filesystem": "the host's",
        "network": "on",
        "processes": "any",
        "memory": "any",
        "file_size": "any",
    }
    base = Result(
        "scored",
        f"final score {score.final_score:.4f}, forget quality F {score.forget_quality:.4f}",
        Submission("/subs/method.py", "ab" * 32),
        PoolInfo("pool-1", "/cache/pools/pool-1", n),
        replace(SETTINGS, n_runs=n),
        Params({"lr": 0.01}, {}, None),
        sandbox=sandbox,
        logs={"stdout": "/run/submission.stdout.log", "stderr": "/run/submission.stderr.log"},
        score=score,
        budget=budget,
        runs=[RunRow(i, i, 0.9, 0.2, 0.85, 0.5, c, f) for i, (c, f) in enumerate(zip(run_cost, fractions))],
        examples=Examples([4, 9], [7, 7], [0.4, 1.2], [0.1, 0.2], [0.1, 0.3]),
        confidence_samples=ConfidenceSamples(
            [0, 1], [4, 9], [0.4, 1.2], [[0.1] * n, [0.2] * n], [[0.1] * n, [0.3] * n]
        ),
        reference=Reference(
            {"test": {"acc": 0.9, "confidence": None}}, {"test": {"acc": 0.88, "confidence": 1.5}}, n, None
        ),
        leaks=[Leak(9, 7, 1.2, 0.2, 0.3, "iVBORw0KGgo=")],
        timing={"total_seconds": 12.5, "child": {"stage_inputs": 0.25}},
        forget_confidences="forget_confidences.npz",
        scenario=Scenario(
            "class",
            {"label": 5},
            {"train": 10, "forget": 2, "retain": 8, "test": 4, "focus": 1},
            "the test images of age group 5",
            "focus_acc",
            {"forget_acc": ScenarioFigure(1.0, 0.0, 0.5), "focus_acc": ScenarioFigure(0.75, None, 0.25)},
        ),
    )
    return replace(base, **given)


def rejected(status: str, message: str = "boom") -> Result:
    """A verdict as the scorer writes it: what was known before it, no numbers."""
    return Result(
        status,
        message,
        Submission("/subs/method.py", "cd" * 32),
        PoolInfo("pool-1", "/cache/pools/pool-1", 3),
        SETTINGS,
        Params(),
        budget=Budget(calibration=None),
        timing={"total_seconds": 1.0},
    )
