"""The ingestion program of the Codabench bundle: run the participant's file on the input data.

The same contract and verdicts as `challenge score`: it runs the kit's own `challenge.ingestion`
over the input data (what `challenge score` stages for its sandbox), in a session of its own so
that the kit's check for left-over processes sees only the participant's. On Codabench the
container is the sandbox. It imports no torch itself, so a file that cannot load is turned away at
once; its output (runs/run-XXXX.pt and .json, or runs/failure.json) is what the scoring program reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

RUNS = "runs"  # the output's subfolder holding run-XXXX.pt/.json


def find_submission(folder: Path) -> Path | None:
    """submission.py, or the only .py file at the top of the participant's zip."""
    if (folder / "submission.py").is_file():
        return folder / "submission.py"
    found = sorted(p for p in folder.glob("*.py") if p.is_file())
    return found[0] if len(found) == 1 else None


def ingest_main(argv: list[str]) -> int:
    """`ingest.py <input_data> <output> <submission folder>`: every run of unlearning(), in its own session."""
    input_dir, output_dir, submission_dir = (Path(a).resolve() for a in argv)
    runs = output_dir / RUNS
    runs.mkdir(parents=True, exist_ok=True)
    source = find_submission(submission_dir)
    if source is None:
        return _reject(runs, "no_function", "the submission zip must hold one .py file at its top level, or a submission.py")
    package_root = str(Path(__file__).resolve().parents[2])  # the folder holding this copy of `challenge`
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as tmp:  # the child's inputs: the spec now names the participant's file
        inputs = Path(tmp)
        spec = json.loads((input_dir / "spec.json").read_text()) | {"submission": str(source)}
        (inputs / "spec.json").write_text(json.dumps(spec))
        for name in ("original.pt", "data.pt"):
            (inputs / name).symlink_to(input_dir / name)
        argv_child = [sys.executable, "-m", "challenge.ingestion", str(inputs), str(runs)]
        return subprocess.run(argv_child, env=env, cwd=tmp, start_new_session=True, stdin=subprocess.DEVNULL).returncode


def _reject(runs: Path, status: str, message: str) -> int:
    print(f"rejected ({status}): {message}", file=sys.stderr)
    (runs / "failure.json").write_text(json.dumps({"status": status, "message": message}))
    return 1
