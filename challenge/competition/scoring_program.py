"""The scoring program of the Codabench bundle, and the data files both programs read.

The scoring program sees only the ingestion's output (the returned state dicts and the ledger
its supervisor wrote) and the reference data (forget, retain and test images with their labels,
the pool's outputs, the settings), never the participant's code. It applies the same judge as
`challenge score` (challenge.scoring.judge), in the same order and with the same settings, and writes the
leaderboard's columns to scores.json, or one line `rejected (status): message` and exit status 1.
Test images are only ever in the reference data.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from challenge.competition.ingestion_program import LEDGER, RUNS
from challenge.errors import ChallengeError, Verdict
from challenge.files import write_json
from challenge.scoring.collateral import PARTS as COLLATERAL_PARTS
from challenge.scoring.evaluation import judge_run, reference_tensors
from challenge.scoring.judge import Attempt, PoolSide, judge_submission, read_failure
from challenge.scoring.protocol import FAILURE, SUBMISSION
from challenge.scoring.result import Score
from challenge.scoring.row import LeaderboardRow
from challenge.scoring.sandbox.types import Outcome
from challenge.scoring.settings import Settings
from challenge.scoring.supervisor import Ledger
from challenge.training.net import NetSpec


# -- data files, written by the bundle ---------------------------------------------------------------
def write_input_data(ctx: Any, folder: Path) -> None:
    """What the participant's code may read: the same files `challenge score` stages for its sandbox."""
    from challenge.scoring.stage import write_child_inputs

    folder.mkdir(parents=True)
    write_child_inputs(ctx, folder, list(range(ctx.settings.n_runs)), SUBMISSION)


def write_reference_data(ctx: Any, folder: Path) -> None:
    """What only the scoring program reads: images with labels to evaluate on, the pool's outputs, the rules."""
    folder.mkdir(parents=True)
    from challenge.scoring.sections import collateral_of, collateral_sizes, original_confidences

    entries = ctx.entries
    data = reference_tensors(ctx.dm, collateral=collateral_sizes(entries))
    torch.save(data, folder / "reference.pt")
    np.savez(
        folder / "pool.npz",
        **{f"collateral_{part}": c for part, c in collateral_of(entries).items()},
        confidences=np.stack([e.confidences for e in entries]),
        retain_acc=np.array([e.retain_acc for e in entries]),
        test_acc=np.array([e.test_acc for e in entries]),
        original=original_confidences(ctx, data),  # the memorisation strata's
    )
    rules = {"settings": ctx.settings.to_dict(), "spec": asdict(ctx.spec), "pool": ctx.pool.fingerprint}
    (folder / "settings.json").write_text(json.dumps(rules, indent=1))


# -- scoring -----------------------------------------------------------------------------------------
def score_main(argv: list[str]) -> int:
    """`score.py <input> <output>`: input/res is the ingestion's output, input/ref the reference data."""
    input_dir, output_dir = (Path(a).resolve() for a in argv)
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        scores = score_runs(input_dir / "res", input_dir / "ref")
    except Verdict as v:
        print(f"rejected ({v.status}): {v.message}", file=sys.stderr)
        return 1
    except ChallengeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_json(output_dir / "scores.json", scores)
    print(json.dumps(scores, indent=1))
    return 0


def score_runs(res: Path, ref: Path) -> dict[str, float]:
    """The leaderboard columns for N returned models, or the Verdict that rejects them: the judge's one order
    (challenge.scoring.judge.judge_submission), as `challenge score` applies it."""
    rules = json.loads((ref / "settings.json").read_text())
    s = Settings.from_dict(rules["settings"])
    torch.set_num_threads(s.threads)  # the thread count changes output bits: the same as `challenge score`
    runs, logs = res / RUNS, {k: str(res / f"submission.{k}.log") for k in ("stdout", "stderr")}
    failure = read_failure(runs / FAILURE)
    if not (res / LEDGER).is_file():  # the ingestion turned the zip away before running anything
        raise Verdict(
            *(failure or ("crashed", "the ingestion program left no ledger: it ended before running the submission"))
        )
    ledger = Ledger.read(res / LEDGER)
    attempt = Attempt(Outcome(**ledger.outcome), ledger.imported, failure, list(range(s.n_runs)), logs)
    data = torch.load(ref / "reference.pt", map_location="cpu", weights_only=True)
    spec = NetSpec(**rules["spec"])
    pool = np.load(ref / "pool.npz")
    original = pool["original"] if "original" in pool.files else None
    kept = {part: pool[f"collateral_{part}"] for part in COLLATERAL_PARTS if f"collateral_{part}" in pool.files}
    side = PoolSide(pool["confidences"], pool["retain_acc"], pool["test_acc"], "the reference data", original, kept)
    judged = judge_submission(
        attempt,
        runs,
        [ledger.runs.get(i) for i in range(s.n_runs)],
        s,
        side,
        lambda i, weights: judge_run(spec, weights, data, i, s),
    )
    return scores_of(judged.score, judged.charges)


def scores_of(score: dict[str, Any], charged: list[dict[str, Any]]) -> dict[str, float]:
    """scores.json: the leaderboard row (LeaderboardRow.scores) of the judge's score and the runs' charges, the
    columns `challenge score`'s result gives (the ceiling aside: the reference data holds no held-out models)."""
    return LeaderboardRow.from_score("submission", Score(**score), [r["cost"] for r in charged]).scores()
