"""A scored submission as a terminal table: every term, the sandbox in force, the budget against its price."""

from __future__ import annotations

import numpy as np

from challenge.scoring.collateral import CollateralF
from challenge.scoring.params import Params
from challenge.scoring.result import Attacks, Budget, Result, Scenario, Strata


def format_result(r: Result) -> str:
    """The whole of a scored result; a rejected one is a line (`challenge score` prints its status and message)."""
    s, sc = r.settings, r.score
    if sc is None or r.budget is None:
        return f"rejected ({r.status}): {r.message}"
    ci = sc.forget_quality_ci
    ci_text = (
        f"{sc.ci_level:.0%} CI [{ci[0]:.3f}, {ci[1]:.3f}] over {sc.n_bootstrap} bootstrap resamples"
        if ci
        else "no CI (scorer.n_bootstrap=0)"
    )
    mia_text = (
        f"{sc.mia:>9.3f}   attack accuracy, forget vs test losses (0.5 = no leak)"
        if sc.mia is not None
        else f"{'n/a':>9}   {sc.mia_note}"
    )
    seeds = f"seeds {s.first_seed}..{s.first_seed + s.n_runs - 1}"
    if s.originals > 1:
        seeds += f"; run i from original i mod {s.originals}"
    lines = [
        f"submission  {r.submission.path} (sha256 {(r.submission.sha256 or '')[:12]})",
        f"pool        {r.pool.fingerprint}: {r.pool.models} retrained models vs {s.n_runs} unlearning runs ({seeds})",
        *_scenario_lines(r.scenario),
        *_protection_lines(r.sandbox or {}),
        *_params_lines(r.params),
        "",
        f"{'':<22}{'unlearned':>9}  {'retrained':>9}  {'ratio':>6}",
        f"{'retain accuracy':<22}{sc.retain_acc_unlearned:>9.3f}  {sc.retain_acc_retrained:>9.3f}  "
        f"{sc.retain_ratio:>6.3f}",
        f"{'test accuracy':<22}{sc.test_acc_unlearned:>9.3f}  {sc.test_acc_retrained:>9.3f}  {sc.test_ratio:>6.3f}",
        f"{'forget quality F':<22}{sc.forget_quality:>9.3f}   {ci_text}",
        f"{'final score':<22}{sc.final_score:>9.3f}   F × retain ratio × test ratio",
        f"{'membership inference':<22}{mia_text}",
        *attack_lines(sc.attacks),
        *strata_lines(sc.strata),
        *collateral_lines(sc.collateral),
        *_figure_lines(r.scenario),
        *budget_lines(r.budget),
    ]
    if r.timing.get("reused_runs"):
        lines.append(f"(reused {r.timing['reused_runs']} finished runs from an earlier scoring)")
    return "\n".join(lines)


def _ci(ci: list[float] | None) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "(no CI)"


def attack_lines(a: Attacks | None) -> list[str]:
    """The per-example attacks (docs/metrics.md), each headline with its interval and what chance reads."""
    if a is None:
        return []
    lines = []
    if a.ulira:
        tpr = ", ".join(f"{float(k):.0%} {v:.3f}" for k, v in a.ulira.tpr_at_fpr.items())
        lines.append(
            f"{'U-LiRA bal. accuracy':<22}{a.ulira.balanced_accuracy:>9.3f}   {_ci(a.ulira.balanced_accuracy_ci)} "
            f"(0.5 = chance); pooled AUC {a.ulira.auc:.3f}, TPR at FPR {tpr}"
        )
    if a.klom:
        k = a.klom
        lines.append(
            f"{'KLoM':<22}{k.mean:>9.3f}   {_ci(k.mean_ci)} (0 = identical); median {k.median:.3f}, {k.bins} bins"
        )
    if a.auc:
        lines.append(
            f"{'per-example AUC':<22}{a.auc.mean_fold:>9.3f}   {_ci(a.auc.mean_fold_ci)} max(AUC, 1 - AUC); "
            f"{a.auc.chance:.3f} at chance"
        )
    return lines


def collateral_lines(kept: list[CollateralF] | None) -> list[str]:
    """F on the samples of retain and test: what unlearning did to the images it should keep."""
    return [
        f"{'F on ' + c.part + ' (kept)':<22}{c.forget_quality:>9.3f}   {_ci(c.forget_quality_ci)} on {c.n_examples} "
        f"images" + ("" if c.ceiling is None else f"; retraining itself {c.ceiling:.3f}")
        for c in kept or []
    ]


def strata_lines(st: Strata | None) -> list[str]:
    """F within each memorisation tercile: where forgetting is hardest, it shows."""
    if st is None:
        return []
    cells = "; ".join(f"{s.name} {s.forget_quality:.3f} {_ci(s.forget_quality_ci)}" for s in st.strata)
    return [f"{'F by memorisation':<22}{'':>9}   {cells}"]


def budget_lines(b: Budget) -> list[str]:
    """The price of a retrain, the rule, and what the runs cost against it (in the clock's seconds)."""
    clock = "CPU s" if b.clock == "cpu" else "s"
    fractions, cal = b.run_fraction, b.calibration
    lines = [f"{'budget per run':<22}{b.per_run:>9.2f}   {clock}: {b.rule}"]
    if cal:
        steps = f"{cal.steps_per_retrain} steps × {cal.per_step_seconds * 1000:.1f} ms ({cal.steps_timed} timed)"
        lines.append(f"{'retrain, calibrated':<22}{cal.retrain_seconds:>9.2f}   {clock}: {steps}")
    lines += [
        f"{'cost per run':<22}{np.mean(b.run_cost):>9.2f}   {clock}, {np.mean(fractions):.0%} of the budget on average,"
        f" max {max(fractions):.0%} (run {int(np.argmax(fractions))})",
        f"{'':<22}{'':>9}   besides the kit's own {np.mean(b.run_kit or [0.0]) * 1000:.0f} ms a run (its fresh "
        f"process, the weights out) and {b.outside_budgets or 0.0:.2f} budgets between the runs, not charged",
        f"{'budgets used':<22}{b.used_budgets:>9.2f}   of {len(fractions)}: {b.enforced}",
        f"{'':<22}{'':>9}   per run (% of budget): " + " ".join(f"{f:.0%}" for f in fractions),
    ]
    return lines


def _scenario_lines(sc: Scenario | None) -> list[str]:
    """What was forgotten: the scenario, its settings and the sizes of its parts."""
    if sc is None:
        return []
    settings = " ".join(f"{k}={v}" for k, v in sc.settings.items())
    sizes = ", ".join(f"{k} {v}" for k, v in sc.sizes.items() if k != "focus" or v)
    return [f"forget      {sc.name}{' ' + settings if settings else ''}: {sizes} images"]


def _figure_lines(sc: Scenario | None) -> list[str]:
    """The scenario's own figures: the original's, the retrained pool's and the unlearned runs' accuracy, and a
    corrective scenario's clean model's."""
    if sc is None:
        return []
    names = {"forget_acc": "forget accuracy", "test_acc": "test accuracy", "focus_acc": "focus accuracy"}
    clean = any(f.clean is not None for f in sc.figures.values())
    who = ("unlearned", "retrained", "original", *(("clean",) if clean else ()))
    lines = [f"{'scenario ' + sc.name:<22}" + "  ".join(f"{w:>9}" for w in who)]
    for key, f in sc.figures.items():
        about = f"   {sc.focus}" if key == "focus_acc" else ""
        cells = "  ".join(f"{'—' if v is None else f'{v:.3f}':>9}" for v in (getattr(f, w) for w in who))
        lines.append(f"{names.get(key, key):<22}{cells}{about}")
    return lines


def _params_lines(p: Params) -> list[str]:
    """The file's hyperparameters, the changed ones marked: what to quote beside a score."""
    if not p.values:
        return []
    shown = " ".join(f"{k}={v!r}{'*' if k in p.changed else ''}" for k, v in p.values.items())
    origin = f"; * set by +params{' or ' + p.file if p.file else ''}" if p.changed else " (the file's own)"
    return [f"params      {shown}{origin}"]


def _protection_lines(p: dict[str, str]) -> list[str]:
    if not p:
        return []
    return [
        f"sandbox     {p['isolation']}: {p['filesystem']}",
        f"            network: {p['network']}; processes: {p['processes']}",
        f"            memory: {p['memory']}; file size: {p['file_size']}",
        *[f"            {key}: {p[key]}" for key in ("identity", "scratch", "disk", "cpu") if p.get(key)],
        *([f"            missing caps: {p['missing']}"] if p.get("missing") not in (None, "none") else []),
    ]
