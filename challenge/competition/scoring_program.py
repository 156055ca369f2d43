"""The scoring program of the Codabench bundle, and the data files both programs read.

The scoring program sees only the ingestion's output and the reference data (forget, retain and
test images with their labels, the pool's outputs, the rules), never the participant's code; it
measures the returned models itself, as `challenge score` does, and writes the leaderboard's
columns to scores.json. Test images are only ever in the reference data.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from challenge.competition.ingestion_program import RUNS
from challenge.ingestion import run_name
from challenge.metric import evaluate_forgetting, logit_scaled_confidence
from challenge.net import NetSpec, accuracy, load_net, predict_logits, save_net
from challenge.score import Context, Verdict, load_weights, read_failure, staged_data

REFERENCE_PARTS = ("forget", "retain", "test")


# -- data files, written by the bundle ---------------------------------------------------------------
def write_input_data(ctx: Context, folder: Path) -> None:
    """What the participant's code may read: the same files `challenge score` stages for its sandbox."""
    folder.mkdir(parents=True)
    net, spec, data_config = load_net(ctx.pool.original_path)
    save_net(net, spec, data_config, folder / "original.pt")  # without the original's test metrics
    torch.save(staged_data(ctx.dm), folder / "data.pt")
    s = ctx.settings
    plan = {"runs": [[i, s.seed(i)] for i in range(s.n_runs)], "batch_size": s.batch_size, "threads": s.threads}
    (folder / "spec.json").write_text(json.dumps(plan))


def write_reference_data(ctx: Context, folder: Path) -> None:
    """What only the scoring program reads: images with labels to evaluate on, the pool's outputs, the rules."""
    folder.mkdir(parents=True)
    blob: dict[str, torch.Tensor] = {}
    for part in REFERENCE_PARTS:
        ds = ctx.dm.dataset(part)
        blob[f"{part}_images"], blob[f"{part}_groups"] = ds.images[ds.indices], ds.groups[ds.indices]
    torch.save(blob, folder / "reference.pt")
    entries = ctx.entries
    np.savez(folder / "pool.npz", confidences=np.stack([e.confidences for e in entries]),
             retain_acc=np.array([e.retain_acc for e in entries]), test_acc=np.array([e.test_acc for e in entries]))
    s = ctx.settings
    rules = {"n_runs": s.n_runs, "first_seed": s.first_seed, "budget_seconds": s.budget_seconds, "budget_rule": s.budget_rule,
             "n_bootstrap": s.n_bootstrap, "batch_size": s.batch_size, "spec": asdict(ctx.spec), "pool": ctx.pool.fingerprint}
    (folder / "settings.json").write_text(json.dumps(rules, indent=1))


# -- scoring -----------------------------------------------------------------------------------------
def score_main(argv: list[str]) -> int:
    """`score.py <input> <output>`: input/res is the ingestion's output, input/ref the reference data."""
    input_dir, output_dir = (Path(a).resolve() for a in argv)
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        scores = score_runs(input_dir / "res" / RUNS, input_dir / "ref")
    except Verdict as v:
        print(f"rejected ({v.status}): {v.message}", file=sys.stderr)
        return 1
    (output_dir / "scores.json").write_text(json.dumps(scores))
    print(json.dumps(scores, indent=1))
    return 0


def score_runs(runs: Path, ref: Path) -> dict[str, float]:
    """The leaderboard columns for N returned models, or the Verdict that rejects them."""
    rules = json.loads((ref / "settings.json").read_text())
    failure = read_failure(runs / "failure.json")
    if failure:
        raise Verdict(*failure)
    seconds = [run_seconds(runs, i, rules) for i in range(rules["n_runs"])]
    data = torch.load(ref / "reference.pt", map_location="cpu", weights_only=True)
    spec = NetSpec(**rules["spec"])
    evals = [evaluate(load_weights(spec, runs / f"{run_name(i)}.pt", i), data, i) for i in range(rules["n_runs"])]
    pool = np.load(ref / "pool.npz")
    u = np.stack([logit_scaled_confidence(e["forget_logits"].numpy(), data["forget_groups"].numpy()) for e in evals])
    result = evaluate_forgetting(
        u, pool["confidences"],
        retain_acc_unlearned=[e["retain_acc"] for e in evals], retain_acc_retrained=pool["retain_acc"],
        test_acc_unlearned=[e["test_acc"] for e in evals], test_acc_retrained=pool["test_acc"],
        n_bootstrap=rules["n_bootstrap"], seed=rules["first_seed"],
    )
    lo, hi = result.forget_quality_ci or (float("nan"), float("nan"))
    return {"final_score": result.final_score, "forget_quality": result.forget_quality, "f_ci_low": lo, "f_ci_high": hi,
            "retain_ratio": result.retain_ratio, "test_ratio": result.test_ratio, "seconds_per_run": float(np.mean(seconds))}


def run_seconds(runs: Path, index: int, rules: dict[str, Any]) -> float:
    """The run's time as ingestion measured it, held to the budget as `challenge score` does."""
    try:
        record = json.loads((runs / f"{run_name(index)}.json").read_text()[:10_000])
        seconds = float(record["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        raise Verdict("crashed", f"run {index} left no readable record: the submission's process ended before finishing it") from None
    if seconds > rules["budget_seconds"]:
        raise Verdict("timeout", f"run {index} took {seconds:.1f} s, over its budget of {rules['budget_seconds']:.1f} s ({rules['budget_rule']})")
    return seconds


def evaluate(net: torch.nn.Module, data: dict[str, torch.Tensor], index: int) -> dict[str, Any]:
    """Accuracies on retain and test, logits on forget; NaN anywhere rejects the run."""
    out: dict[str, Any] = {}
    for part in REFERENCE_PARTS:
        images, groups = data[f"{part}_images"], data[f"{part}_groups"]
        batches = [{"image": images[i:i + 512], "age_group": groups[i:i + 512]} for i in range(0, len(images), 512)]
        logits, targets = predict_logits(net, batches)
        if not torch.isfinite(logits).all():
            raise Verdict("non_finite", f"run {index} returned a model whose outputs on {part} images contain NaN or infinity")
        out[f"{part}_acc"], out[f"{part}_logits"] = accuracy(logits, targets), logits
    return out
