"""The sections of a scored Result built beside the judge's score: the budget as charged, the ceiling (retraining
scored against the reference), the per-example table, a few confidence samples for plots, and the kept [N, K]
confidences that paired comparisons read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from challenge.files import write_atomic, write_with
from challenge.pool import PoolEntry
from challenge.scoring.attacks import attacks
from challenge.scoring.budget import Budget, read_calibration
from challenge.scoring.collateral import CollateralF
from challenge.scoring.compare import (
    Confidences,
    draw_key,
    write_confidences,
)
from challenge.scoring.context import Context
from challenge.scoring.evaluation import RunEval
from challenge.scoring.judge import PoolSide
from challenge.scoring.metric import (
    ForgettingResult,
    evaluate_forgetting,
    forget_score,
    logit_scaled_confidence,
    per_example_epsilon,
)
from challenge.scoring.protocol import (
    CALIBRATION,
)
from challenge.scoring.result import Budget as BudgetSection
from challenge.scoring.result import (
    Calibration,
    Ceiling,
    ConfidenceSamples,
    Examples,
    decode,
)
from challenge.scoring.settings import Settings
from challenge.scoring.work import Work
from challenge.training.net import load_net, logits_in_batches

N_CONFIDENCE_SAMPLES = 4  # forget images whose every-model confidences go into the result, for plots


def budget_section(work: Work, s: Settings, runs: list[dict[str, Any]], outside: float) -> BudgetSection:
    """What result.json says of the budget: the price of a retrain, the rule, each run's cost against it."""
    calibration = read_calibration(work.root / CALIBRATION)
    fractions = [r["cost"] / r["budget"] for r in runs]
    if s.budget_seconds is not None or calibration is not None:
        price = Budget.priced(s, calibration)
    else:  # every run was reused and the last price is gone: each run keeps its own attempt's
        rule = f"{s.budget_fraction:g} × retraining's cost, priced by earlier attempts"
        price = Budget(
            float(np.mean([r["budget"] for r in runs])),
            rule,
            clock="wall" if s.device == "cuda" else "cpu",
            cap=s.budget_cap,
            wall_slack=s.wall_slack,
            exempt=s.budget_exempt,
        )
    return BudgetSection(
        **price.to_dict(),
        fraction=s.budget_fraction if s.budget_seconds is None else None,
        total=s.n_runs * price.per_run,
        calibration=Calibration(**calibration) if calibration else None,
        run_cost=[r["cost"] for r in runs],
        run_wall=[r["wall"] for r in runs],
        run_kit=[r.get("kit", 0.0) for r in runs],
        run_budget=[r["budget"] for r in runs],
        run_fraction=fractions,
        outside_budgets=outside,
        used_budgets=sum(fractions),
        enforced=(
            "exempt (BUDGET_EXEMPT in a kit baseline)"
            if s.budget_exempt
            else f"the {s.n_runs} runs within {s.n_runs} budgets (Kaggle's rule); "
            f"one run stopped past {s.budget_cap:g} budgets"
        ),
    )


def calibration_of(work: Work) -> Calibration | None:
    """The price of a retrain this attempt's child measured, if it got that far."""
    cal = read_calibration(work.root / CALIBRATION)
    return Calibration(**cal) if cal else None


def ceiling(ctx: Context) -> Ceiling | None:
    """What retraining itself scores against the reference, at the same N and K: the held-out half of
    the pool scored as if it were a submission. F cannot reach 1 at small N (at N = 16 retraining
    scores about 0.15), so a method's F means little until it is read as a fraction of this; the attacks
    on it are their chance levels here (KLoM's above 0 and the AUC fold's above 0.5 at small N)."""
    held, ref, s = ctx.held_out, ctx.entries, ctx.settings
    if not held:
        return None
    # The same for every submission on this pool: computed once (its bootstrap is a minute at N = 512).
    named = "-".join(s.attacks) or "no-attacks"
    cache = ctx.pool.root / f"ceiling-n{s.n_runs}-b{s.n_bootstrap}-s{s.first_seed}-{named}.json"
    if cache.is_file():
        return decode(Ceiling, json.loads(cache.read_text()))
    unlearned, retrained = pool_side(held, "held-out models"), pool_side(ref, "the reference")
    res = evaluate_forgetting(
        unlearned.confidences,
        retrained.confidences,
        retain_acc_unlearned=unlearned.retain_acc,
        retain_acc_retrained=retrained.retain_acc,
        test_acc_unlearned=unlearned.test_acc,
        test_acc_retrained=retrained.test_acc,
        n_bootstrap=s.n_bootstrap,
        seed=s.first_seed,
    )
    seeds = f"seeds {held[0].seed}-{held[-1].seed}"
    source = f"{len(held)} held-out retrained models of the pool ({seeds}) against the {len(ref)} reference ones"
    out = Ceiling(
        res.forget_quality,
        list(res.forget_quality_ci) if res.forget_quality_ci else None,
        res.final_score,
        res.n_models,
        res.n_examples,
        source,
        attacks(unlearned.confidences, retrained.confidences, s.attacks, res),
    )
    write_atomic(cache, json.dumps(asdict(out)))
    return out


def pool_side(entries: list[PoolEntry], where: str, original: np.ndarray | None = None) -> PoolSide:
    """Retrained models as the metric takes them: [N, K] forget confidences, retain and test accuracies (and
    the original's forget confidences, for the memorisation strata; the collateral samples' confidences)."""
    return PoolSide(
        np.stack([e.confidences for e in entries]),
        [e.retain_acc for e in entries],
        [e.test_acc for e in entries],
        where,
        original,
        collateral_of(entries),
    )


def collateral_of(entries: list[PoolEntry]) -> dict[str, np.ndarray]:
    """{part: [N, k]} on the collateral samples; empty unless every entry kept the same ones (the size is in the
    fingerprint, so only entries written by hand differ: no collateral F then, rather than a crash)."""
    first = entries[0].collateral if entries else None
    if not first or any(e.collateral is None or e.collateral.keys() != first.keys() for e in entries):
        return {}
    if any(e.collateral[p].shape != first[p].shape for e in entries for p in first):
        return {}
    return {part: np.stack([e.collateral[part] for e in entries]) for part in first}


def with_collateral_ceiling(ctx: Context, collateral: list[CollateralF] | None) -> list[CollateralF] | None:
    """Each part's F as retraining itself scores it (the held-out half of the pool against the reference; a point
    estimate): what a method's F on images it should keep can come near at this N and k."""
    held, ref = collateral_of(ctx.held_out), collateral_of(ctx.entries)
    out = []
    for c in collateral or []:
        top = None
        if c.part in held and c.part in ref:
            top = forget_score(per_example_epsilon(held[c.part], ref[c.part]), len(held[c.part]))
        out.append(replace(c, ceiling=top))
    return out or None


def collateral_sizes(entries: list[PoolEntry]) -> dict[str, int]:
    """How many images of each part the pool kept outputs on: the judge evaluates the runs on the same ones."""
    return {part: c.shape[1] for part, c in collateral_of(entries).items()}


def original_confidences(ctx: Context, data: dict[str, torch.Tensor]) -> np.ndarray:
    """The original model's logit-scaled confidences on the forget images, in forget-split order: the pool
    keeps only the retrained models', so they are computed once, by the judge's own evaluation (batch size
    and device as for the runs), and cached beside the original in the pool's folder."""
    s = ctx.settings
    cache = ctx.pool.root / f"original-forget-confidences-{s.device}-b{s.eval_batch_size}.npy"
    if cache.is_file():
        return np.load(cache)
    net, _, _ = load_net(ctx.pool.original_path)
    logits = logits_in_batches(net, data["forget_images"], s.eval_batch_size, s.device)
    conf = logit_scaled_confidence(logits.numpy(), data["forget_groups"].numpy())
    write_with(cache, lambda tmp: np.save(tmp, conf))
    return conf


def examples(ctx: Context, evals: list[RunEval], eps: np.ndarray) -> Examples:
    """One entry per forget image, in forget-split order: who it is and how well it was forgotten."""
    idx = ctx.dm.split.indices("forget")
    return Examples(
        image_id=[int(i) for i in idx],
        person_id=[int(ctx.dm.faces.person_ids[i]) for i in idx],
        epsilon=[float(x) for x in eps],
        unlearned_confidence=np.mean([e.forget_conf for e in evals], axis=0).tolist(),
        retrained_confidence=np.mean([e.confidences for e in ctx.entries], axis=0).tolist(),
    )


def confidence_samples(ctx: Context, evals: list[RunEval], eps: np.ndarray) -> ConfidenceSamples:
    """Every model's confidence on a few forget images, to draw unlearned against retrained.

    The images are spread evenly over the forget split, the same for every submission on a pool,
    so that reports can set methods side by side; the full [N, K] arrays would be too large to keep.
    """
    picks = np.unique(np.linspace(0, len(eps) - 1, min(N_CONFIDENCE_SAMPLES, len(eps))).round().astype(int))
    ids = ctx.dm.split.indices("forget")
    return ConfidenceSamples(
        forget_index=picks.tolist(),
        image_id=[int(ids[i]) for i in picks],
        epsilon=[float(eps[i]) for i in picks],
        unlearned=[[float(e.forget_conf[i]) for e in evals] for i in picks],
        retrained=[[float(e.confidences[i]) for e in ctx.entries] for i in picks],
    )


def keep_confidences(ctx: Context, kept: Path, evals: list[RunEval], metric: ForgettingResult) -> None:
    """A scored result's per-model forget confidences, kept beside its cached result as `kept`.

    result.json has room for a few examples only (`confidence_samples`); a paired comparison of two
    results (challenge.scoring.compare) needs all [N, K] of them. The metric adds its interval's
    replicates, so that comparisons need not recompute them; `_finish` copies the file beside result.json.
    """
    reps = metric.replicates
    draw = draw_key(metric.seed, metric.n_bootstrap, metric.delta, metric.thresholds) if reps is not None else ""
    unlearned = np.stack([e.forget_conf for e in evals])
    write_confidences(
        kept, Confidences(unlearned, pool_side(ctx.entries, "").confidences, ctx.pool.fingerprint, reps, draw)
    )
