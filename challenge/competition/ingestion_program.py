"""The ingestion program of the Codabench bundle: run the participant's file on the input data.

The same child, sandbox and meter as `challenge score` (challenge.scoring.supervisor): the kit's own
`challenge.scoring.child` runs every unlearning() call over the input data, watched by this process,
which prices the budget and charges each run from its own clock. On Codabench the container is
the outer sandbox; bubblewrap is used inside it where it works. It judges nothing: it writes what
it saw to ledger.json, after the child has ended (so the child cannot forge it), beside the child's
runs/ folder, and the scoring program's one judge (challenge.scoring.judge) decides.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from challenge.scoring.protocol import DATA, FAILURE, SPEC, SUBMISSION, original_name

RUNS = "runs"  # the output's subfolder holding run-XXXX.pt/.json (or failure.json)
LEDGER = "ledger.json"  # what the supervisor saw: the child's end, the price of a retrain, each run's charge


def find_submission(folder: Path) -> Path | None:
    """submission.py, or the only .py file at the top of the participant's zip."""
    if (folder / SUBMISSION).is_file():
        return folder / SUBMISSION
    found = sorted(p for p in folder.glob("*.py") if p.is_file())
    return found[0] if len(found) == 1 else None


def ingest_main(argv: list[str]) -> int:
    """`ingest.py <input_data> <output> <submission folder>`: every run of unlearning(), supervised."""
    from challenge.files import write_json
    from challenge.scoring.gpu import gpu_for
    from challenge.scoring.sandbox import Sandbox
    from challenge.scoring.settings import Settings
    from challenge.scoring.supervisor import supervise

    input_dir, output_dir, submission_dir = (Path(a).resolve() for a in argv)
    runs = output_dir / RUNS
    runs.mkdir(parents=True, exist_ok=True)
    source = find_submission(submission_dir)
    if source is None:
        write_json(
            runs / FAILURE,
            {
                "status": "no_function",
                "message": "the submission zip must hold one .py file at its top level, or a submission.py",
            },
        )
        return 0
    spec = json.loads((input_dir / SPEC).read_text())
    settings = Settings.from_dict(spec["settings"])
    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs, scratch = Path(tmp) / "inputs", Path(tmp) / "outputs", Path(tmp) / "scratch"
        for d in (inputs, outputs, scratch):
            d.mkdir()
        shutil.copyfile(source, inputs / SUBMISSION)
        for name in (DATA, SPEC, *(original_name(s) for s in range(settings.originals))):
            shutil.copyfile(input_dir / name, inputs / name)
        box = Sandbox(inputs, outputs, scratch, settings.limits, settings.isolation, gpu_for(settings.device))
        logs = {k: output_dir / f"submission.{k}.log" for k in ("stdout", "stderr")}
        todo = [int(i) for i, _ in spec["runs"]]
        _, ledger = supervise(box, todo, settings, logs, keep=runs)  # each run's files go to runs/ as it ends
        if (outputs / FAILURE).is_file() and not (outputs / FAILURE).is_symlink():
            shutil.copyfile(outputs / FAILURE, runs / FAILURE)
    ledger.write(output_dir / LEDGER)
    print(f"ingestion: {len(ledger.runs)} of {len(todo)} runs ended; the scoring program judges them", file=sys.stderr)
    return 0
