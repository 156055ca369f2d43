"""`challenge score <file.py>`: one table on stdout, result.json in the run folder, exit 1 on a verdict."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from challenge.errors import ChallengeError
from challenge.reports.result import format_result
from challenge.reports.tracking import log_score
from challenge.scoring.result import RESULT_FILE, Result
from challenge.scoring.scorer import score_submission


def run(cfg: DictConfig) -> Result:
    """`challenge score <file.py>`: one table on stdout, result.json in the run folder, exit 1 on a verdict."""
    if OmegaConf.is_missing(cfg, "submission"):
        raise ChallengeError("name the submission file: challenge score path/to/submission.py")
    out = Path(cfg.paths.output_dir)
    result = score_submission(cfg, Path(cfg.submission), out)
    log_score(cfg, result)
    sandbox = result.sandbox
    if sandbox and sandbox["isolation"].startswith("none"):
        print(f"warning: isolation: {sandbox['isolation']} — {sandbox['filesystem']}", file=sys.stderr)
    if not result.scored:
        print(f"rejected ({result.status}): {result.message}", file=sys.stderr)
        print(f"result: {out / RESULT_FILE}", file=sys.stderr)
        sys.exit(1)
    print(format_result(result))
    print(f"result: {out / RESULT_FILE}")
    return result
