"""A scored submission as a terminal table: every term, the sandbox in force, the budget against its price."""

from __future__ import annotations

from typing import Any

import numpy as np


def format_result(r: dict[str, Any]) -> str:
    s, t, sc = r["settings"], r["timing"], r["score"]
    ci = sc["forget_quality_ci"]
    ci_text = f"{sc['ci_level']:.0%} CI [{ci[0]:.3f}, {ci[1]:.3f}] over {sc['n_bootstrap']} bootstrap resamples" if ci else "no CI (scorer.n_bootstrap=0)"
    mia_text = f"{sc['mia']:>9.3f}   attack accuracy, forget vs test losses (0.5 = no leak)" if sc["mia"] is not None else f"{'n/a':>9}   {sc['mia_note']}"
    lines = [
        f"submission  {r['submission']['path']} (sha256 {r['submission']['sha256'][:12]})",
        f"pool        {r['pool']['fingerprint']}: {r['pool']['models']} retrained models vs {s['n_runs']} unlearning runs (seeds {s['first_seed']}..{s['first_seed'] + s['n_runs'] - 1})",
        *_protection_lines(r["sandbox"]),
        *_params_lines(r.get("params")),
        "",
        f"{'':<22}{'unlearned':>9}  {'retrained':>9}  {'ratio':>6}",
        f"{'retain accuracy':<22}{sc['retain_acc_unlearned']:>9.3f}  {sc['retain_acc_retrained']:>9.3f}  {sc['retain_ratio']:>6.3f}",
        f"{'test accuracy':<22}{sc['test_acc_unlearned']:>9.3f}  {sc['test_acc_retrained']:>9.3f}  {sc['test_ratio']:>6.3f}",
        f"{'forget quality F':<22}{sc['forget_quality']:>9.3f}   {ci_text}",
        f"{'final score':<22}{sc['final_score']:>9.3f}   F × retain ratio × test ratio",
        f"{'membership inference':<22}{mia_text}",
        *budget_lines(r["budget"]),
    ]
    if t.get("reused_runs"):
        lines.append(f"(reused {t['reused_runs']} finished runs from an earlier scoring)")
    return "\n".join(lines)


def budget_lines(b: dict[str, Any]) -> list[str]:
    """The price of a retrain, the rule, and what the runs cost against it (in the clock's seconds)."""
    clock = "CPU s" if b["clock"] == "cpu" else "s"
    fractions = b["run_fraction"]
    cal = b.get("calibration")
    lines = [f"{'budget per run':<22}{b['per_run']:>9.2f}   {clock}: {b['rule']}"]
    if cal:
        lines.append(f"{'retrain, calibrated':<22}{cal['retrain_seconds']:>9.2f}   {clock}: {cal['steps_per_retrain']} steps × {cal['per_step_seconds'] * 1000:.1f} ms ({cal['steps_timed']} timed)")
    lines += [
        f"{'cost per run':<22}{np.mean(b['run_cost']):>9.2f}   {clock}, {np.mean(fractions):.0%} of the budget on average, max {max(fractions):.0%} (run {int(np.argmax(fractions))})",
        f"{'budgets used':<22}{b['used_budgets']:>9.2f}   of {len(fractions)}: {b['enforced']}",
        f"{'':<22}{'':>9}   per run (% of budget): " + " ".join(f"{f:.0%}" for f in fractions),
    ]
    return lines


def _params_lines(p: dict[str, Any] | None) -> list[str]:
    """The file's hyperparameters, the changed ones marked: what to quote beside a score."""
    if not p or not p["values"]:
        return []
    shown = " ".join(f"{k}={v!r}{'*' if k in p['changed'] else ''}" for k, v in p["values"].items())
    origin = f"; * set by +params{' or ' + p['file'] if p['file'] else ''}" if p["changed"] else " (the file's own)"
    return [f"params      {shown}{origin}"]


def _protection_lines(p: dict[str, str]) -> list[str]:
    return [
        f"sandbox     {p['isolation']}: {p['filesystem']}",
        f"            network: {p['network']}; processes: {p['processes']}",
        f"            memory: {p['memory']}; file size: {p['file_size']}",
        *[f"            {key}: {p[key]}" for key in ("identity", "scratch", "disk", "cpu") if p.get(key)],
        *([f"            missing caps: {p['missing']}"] if p.get("missing") not in (None, "none") else []),
    ]


