"""`challenge competition bundle`: the same competition as a Codabench (v2) competition bundle.

One task per phase (its own input data, reference data and so its own pool), all sharing one
ingestion program (`ingestion_program.py`) and one scoring program (`scoring_program.py`); one
leaderboard whose columns are the keys the scoring program writes to scores.json (both from
challenge.scoring.row.SCORE_COLUMNS, a LeaderboardRow's). `validate` applies the rules Codabench's v2
unpacker and compute worker enforce, so a bundle that passes here is not refused on upload for a
missing key, a missing file or overlapping phase dates; `try_task` runs a task's two programs the
way the compute worker does (same folders, same $-variables), without Docker.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from challenge.competition.phases import Phase, phase_config, phases
from challenge.errors import ChallengeError
from challenge.files import write_with
from challenge.kit import PACKAGE, kit_path
from challenge.scoring.row import SCORE_COLUMNS

TEMPLATE = kit_path("submissions") / "template.py"
COLUMNS = SCORE_COLUMNS  # scores.json keys (key, title, sorting), in leaderboard order; the first decides the ranking
INGESTION_COMMAND = "python3 $program/ingest.py $input $output $submission_program"
SCORING_COMMAND = "python3 $program/score.py $input $output"
_ENTRY = '''"""Codabench {kind} program of the unlearning challenge kit (challenge/competition/{kind}_program.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # this folder's copy of the `challenge` package
from challenge.competition.{kind}_program import {function}  # noqa: E402

sys.exit({function}(sys.argv[1:]))
'''


# -- building ----------------------------------------------------------------------------------------
def build(cfg: DictConfig, out: Path) -> Path:
    """Write the bundle zip; each phase's pool must exist (`challenge competition init`)."""
    from challenge.competition.scoring_program import (
        write_input_data,
        write_reference_data,
    )
    from challenge.scoring.context import prepare

    all_phases = phases(cfg)
    over = next((p for p in all_phases if p.splits), None)
    if over is not None:
        raise ChallengeError(
            f"competition.phases.{over.name}.splits: a Codabench bundle holds one forget set per phase, and this "
            "phase ranks over several; bundle a copy of the config without `splits` (the local workers rank over them)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_program(root / "ingestion_program", "ingestion", "ingest_main", INGESTION_COMMAND)
        write_program(root / "scoring_program", "scoring", "score_main", SCORING_COMMAND)
        contexts = []
        for phase in all_phases:
            ctx = prepare(phase_config(cfg, phase))
            write_input_data(ctx, root / phase.name / "input_data")
            write_reference_data(ctx, root / phase.name / "reference_data")
            contexts.append(ctx)
        sample = Path(cfg.competition.bundle.sample_submission or TEMPLATE)
        (root / "sample_submission").mkdir()
        shutil.copyfile(sample, root / "sample_submission" / "submission.py")
        write_pages(root / "pages", cfg, all_phases, contexts)
        write_logo(root / "logo.png")
        spec = competition_yaml(cfg, all_phases, contexts)
        (root / "competition.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
        out.parent.mkdir(parents=True, exist_ok=True)
        zip_folder(root, out)
    return out


def write_program(folder: Path, kind: str, function: str, command: str) -> None:
    """metadata.yaml (the command Codabench runs), an entry script, and a copy of the kit's package."""
    shutil.copytree(PACKAGE, folder / "challenge", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    script = "ingest.py" if kind == "ingestion" else "score.py"
    (folder / script).write_text(_ENTRY.format(kind=kind, function=function))
    (folder / "metadata.yaml").write_text(yaml.safe_dump({"command": command}))


def competition_yaml(cfg: DictConfig, all_phases: list[Phase], contexts: list[Any]) -> dict[str, Any]:
    c, margin = cfg.competition, float(cfg.competition.bundle.execution_margin_seconds)
    per_day = c.limits.per_team_per_day
    return {
        "version": 2,
        "title": str(c.title),
        "description": " ".join(str(c.description).split()),
        "image": "logo.png",
        "terms": "pages/terms.md",
        "docker_image": str(c.bundle.docker_image),
        "registration_auto_approve": True,
        "make_programs_available": False,
        "make_input_data_available": False,
        "pages": [
            {"title": t, "file": f"pages/{f}"}
            for t, f in (
                ("Overview", "overview.md"),
                ("Evaluation", "evaluation.md"),
                ("Data", "data.md"),
                ("Terms", "terms.md"),
            )
        ],
        "tasks": [
            {
                "index": i,
                "name": f"{p.name} split",
                "description": p.description or f"the {p.name} split",
                "ingestion_program": "ingestion_program",
                "scoring_program": "scoring_program",
                "input_data": f"{p.name}/input_data",
                "reference_data": f"{p.name}/reference_data",
            }
            for i, p in enumerate(all_phases)
        ],
        "solutions": [
            {
                "index": 0,
                "name": "sample submission",
                "tasks": list(range(len(all_phases))),
                "path": "sample_submission",
            }
        ],
        "phases": [_phase(i, p, ctx, margin, per_day) for i, (p, ctx) in enumerate(zip(all_phases, contexts))],
        "leaderboards": [
            {
                "title": "Results",
                "key": "main",
                "columns": [{"title": t, "key": k, "index": i, "sorting": s} for i, (k, t, s) in enumerate(COLUMNS)],
            }
        ],
    }


def _phase(i: int, p: Phase, ctx: Any, margin: float, per_day: Any) -> dict[str, Any]:
    """One phase; its time limit is the runs' wall-clock ceiling, estimated from the pool's build times."""
    s = ctx.settings
    return {
        "index": i,
        "name": p.name,
        "description": p.description or p.name,
        "start": _date_text(p.start),
        **({"end": _date_text(p.end)} if p.end else {}),
        "tasks": [i],
        **({"max_submissions_per_day": int(per_day)} if per_day is not None else {}),
        "execution_time_limit": int(
            s.wall_estimate(ctx.pool.mean_retrain_seconds(s.n_runs)) + s.startup_seconds + margin
        ),
        **({"auto_migrate_to_this_phase": True} if i > 0 else {}),
    }


def _date_text(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def write_pages(folder: Path, cfg: DictConfig, all_phases: list[Phase], contexts: list[Any]) -> None:
    from challenge.scoring.scenario import forget_text, scenario_section

    folder.mkdir()
    c, s = cfg.competition, contexts[0].settings
    schedule = "\n".join(
        f"- **{p.name}** ({_date_text(p.start)} to {_date_text(p.end) if p.end else 'open-ended'} UTC): {p.description}"
        for p in all_phases
    )
    (folder / "overview.md").write_text(
        f"# {c.title}\n\n{' '.join(str(c.description).split())}\n\n## Phases\n\n{schedule}\n\n"
        "## How to submit\n\nZip one Python file (name it `submission.py` if the zip holds several) that defines\n"
        "`unlearning(net, retain_loader, forget_loader, val_loader)`: change `net` in place and return nothing,\n"
        "or return a model of the same architecture. Batches are dicts with `image`, `age_group`, `age`,\n"
        "`person_id` and `image_id`. The sample submission is the starting kit's fine-tuning baseline.\n"
    )
    (folder / "evaluation.md").write_text(
        "# Evaluation\n\n"
        f"Your `unlearning` runs {s.n_runs} times from the original model, each with its own seed; the {s.n_runs} "
        "runs may\n"
        f"use {s.n_runs} budgets in all, a budget being {s.rule_text()}\n"
        f"(CPU time on a CPU, so that other load does not count against you). Its {s.n_runs} models are compared with "
        f"{s.n_runs} models\n"
        "retrained from scratch without the forget set, as in the NeurIPS 2023 Machine Unlearning Challenge:\n\n"
        "- **Forget quality F**: for each forget image, an epsilon saying how well the best threshold test tells\n"
        "  your models' confidences from the retrained models'; F averages points that halve with every 0.5 of\n"
        "  epsilon. A bootstrap over the models gives its 95% interval.\n"
        "- **Final score** = F x (retain accuracy, yours / retrained) x (test accuracy, yours / retrained).\n\n"
        "A run over budget, an exception, a model of another architecture or non-finite outputs reject the "
        "submission.\n"
    )
    forgets = "\n".join(
        f"- **{p.name}**: {forget_text(scenario_section(ctx))}." for p, ctx in zip(all_phases, contexts)
    )
    (folder / "data.md").write_text(
        "# Data\n\nFace images labelled with an age group (the target) and a person id. The validation set is for "
        "your own\nchecks; test images are used only by the scoring program.\n\n## What each phase forgets\n\n"
        f"{forgets}\n\nEach phase draws its own forget set, and has its own original model and retrained models.\n"
    )
    terms = (
        c.bundle.terms
        or "Submissions must be your own work. The organizers may disqualify any attempt to read hidden data or "
        "interfere with scoring."
    )
    (folder / "terms.md").write_text(f"# Terms\n\n{terms}\n")


def write_logo(path: Path) -> None:
    """A small generated PNG: Codabench requires a logo and checks that it is an image."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (128, 128), (32, 64, 112))
    ImageDraw.Draw(img).ellipse((24, 24, 104, 104), outline=(240, 240, 240), width=6)
    img.save(path)


def zip_folder(folder: Path, out: Path) -> None:
    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    z.write(path, path.relative_to(folder).as_posix())

    write_with(out, write)


# -- validating --------------------------------------------------------------------------------------
def validate(bundle: Path) -> str:
    """Codabench's v2 rules, all problems at once in a ChallengeError; a one-line summary if none."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        try:
            with zipfile.ZipFile(bundle) as z:
                z.extractall(root)
        except zipfile.BadZipFile:
            raise ChallengeError(f"{bundle} is not a zip file") from None
        spec, problems = read_spec(root)
        if spec is not None:
            problems += check_spec(spec, root)
    if problems:
        raise ChallengeError(f"{bundle} breaks Codabench's bundle rules: " + "; ".join(problems))
    names = ", ".join(str(p["name"]) for p in spec["phases"])
    return (
        f"Codabench v2 bundle, {len(spec['tasks'])} tasks, phases {names}, "
        f"{len(spec['leaderboards'][0]['columns'])} leaderboard columns; passes the v2 unpacker's checks"
    )


def read_spec(root: Path) -> tuple[dict[str, Any] | None, list[str]]:
    path = root / "competition.yaml"
    if not path.is_file():
        return None, ["competition.yaml is missing from the zip's root"]
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        return None, [f"competition.yaml does not parse: {' '.join(str(e).split())}"]
    if not isinstance(spec, dict):
        return None, ["competition.yaml is not a mapping"]
    if str(spec.get("version", "1")) != "2":
        return None, [f"version must be 2 for a v2 bundle, not {spec.get('version', '1 (missing)')}"]
    return spec, []


def check_spec(spec: dict[str, Any], root: Path) -> list[str]:
    problems = [
        f"missing required key {k!r}"
        for k in ("title", "image", "terms", "pages", "tasks", "phases", "leaderboards")
        if not spec.get(k)
    ]
    if problems:
        return problems
    problems += _check_file(root, spec["image"], "image")
    problems += _check_file(root, spec["terms"], "terms", text=True)
    for page in spec["pages"]:
        problems += [f"page without a title: {page}"] if not page.get("title") else []
        problems += _check_file(root, page.get("file", ""), f"page {page.get('title')}", text=True)
    tasks, task_problems = _check_tasks(spec["tasks"], root)
    problems += task_problems
    problems += _check_solutions(spec.get("solutions") or [], tasks, root)
    problems += _check_phases(spec["phases"], tasks)
    problems += _check_leaderboards(spec["leaderboards"])
    return problems


def _check_file(root: Path, name: str, what: str, text: bool = False) -> list[str]:
    path = root / str(name)
    if not name or not path.exists():
        return [f"{what}: {name!r} is not in the bundle"]
    if text and path.is_file() and not path.read_text().strip():
        return [f"{what}: {name} is empty"]
    return []


def _check_tasks(tasks: list[dict[str, Any]], root: Path) -> tuple[set[Any], list[str]]:
    seen: set[Any] = set()
    problems: list[str] = []
    for task in tasks:
        index = task.get("index")
        if index is None:
            problems.append(f"task {task.get('name')!r} has no index")
            continue
        if index in seen:
            problems.append(f"duplicate task index {index}")
        seen.add(index)
        if not task.get("name"):
            problems.append(f"task {index} has no name")
        if "scoring_program" not in task:
            problems.append(f"task {index} has no scoring program")
        for kind in ("ingestion_program", "input_data", "scoring_program", "reference_data"):
            if kind in task:
                problems += _check_file(root, task[kind], f"task {index} {kind}")
        for kind in ("ingestion_program", "scoring_program"):
            if kind in task and (root / str(task[kind])).is_dir():
                problems += _check_metadata(root / str(task[kind]), f"task {index} {kind}")
    return seen, problems


def _check_metadata(folder: Path, what: str) -> list[str]:
    """The compute worker runs `command` from metadata.yaml (or metadata); without it nothing runs."""
    meta = next((folder / n for n in ("metadata.yaml", "metadata") if (folder / n).is_file()), None)
    if meta is None:
        return [f"{what} has no metadata.yaml"]
    try:
        command = (yaml.safe_load(meta.read_text()) or {}).get("command")
    except (yaml.YAMLError, AttributeError):
        command = None
    return [] if command else [f"{what}: {meta.name} names no command"]


def _check_solutions(solutions: list[dict[str, Any]], tasks: set[Any], root: Path) -> list[str]:
    problems: list[str] = []
    for s in solutions:
        if "index" not in s or "tasks" not in s:
            problems.append(f"solution {s.get('name')!r} needs an index and tasks")
            continue
        problems += [f"solution {s['index']} points at unknown task {t}" for t in s["tasks"] if t not in tasks]
        problems += _check_file(root, s.get("path", ""), f"solution {s['index']}") if "key" not in s else []
    return problems


def _check_phases(all_phases: list[dict[str, Any]], tasks: set[Any]) -> list[str]:
    """Each phase needs tasks and a start; phases must follow each other without touching."""
    problems: list[str] = []
    dated: list[tuple[str, datetime, datetime | None]] = []
    for p in sorted(all_phases, key=lambda p: p.get("index", 0)):
        name = str(p.get("name") or p.get("index"))
        problems += [f"phase {name} has no name"] if not p.get("name") else []
        problems += [f"phase {name} has no tasks"] if not p.get("tasks") else []
        problems += [f"phase {name} points at unknown task {t}" for t in p.get("tasks") or [] if t not in tasks]
        problems += (
            ["the first phase cannot be an auto-migration target"]
            if not dated and p.get("auto_migrate_to_this_phase")
            else []
        )
        try:
            start, end = _when(p.get("start")), _when(p.get("end"))
        except ValueError as e:
            problems.append(f"phase {name}: {e}")
            continue
        if start is None:
            problems.append(f"phase {name} has no start date")
            continue
        dated.append((name, start, end))
    for (a, _, a_end), (b, b_start, _) in zip(dated, dated[1:]):
        if a_end is None:
            problems.append(f"phase {a} must have an end date because phase {b} follows it")
        elif b_start <= a_end:
            problems.append(f"phase {b} must start after phase {a} ends ({a_end:%Y-%m-%d %H:%M})")
    return problems


def _when(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, date):
        return datetime.combine(value, datetime.min.time())
    try:
        return datetime.fromisoformat(str(value)).replace(tzinfo=None)
    except ValueError:
        raise ValueError(f"{value!r} is not a date") from None


def _check_leaderboards(boards: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    for board in boards:
        title = board.get("title") or board.get("key")
        problems += [f"leaderboard {title!r} has no {k}" for k in ("title", "key") if not board.get(k)]
        columns = board.get("columns") or []
        if not columns:
            problems.append(f"leaderboard {title!r} has no columns")
        indexes = [c.get("index") for c in columns]
        if len(set(indexes)) != len(indexes):
            problems.append(f"leaderboard {title!r} repeats a column index")
        for col in columns:
            problems += [
                f"leaderboard {title!r} column {col.get('key') or col.get('title')!r} has no {k}"
                for k in ("title", "key", "index")
                if col.get(k) is None
            ]
            if col.get("sorting", "desc") not in ("asc", "desc"):
                problems.append(f"column {col.get('key')!r}: sorting must be asc or desc")
    return problems


# -- trying it locally -------------------------------------------------------------------------------
def try_task(bundle: Path, task_index: int, submission: Path, work: Path) -> dict[str, Any]:
    """Run one task's ingestion then scoring program on a submission folder, in the compute
    worker's folder layout; returns scores.json, or raises ChallengeError with the program's stderr."""
    root = work / "bundle"
    with zipfile.ZipFile(bundle) as z:
        z.extractall(root)
    spec = yaml.safe_load((root / "competition.yaml").read_text())
    task = next(t for t in spec["tasks"] if t["index"] == task_index)
    run = work / f"task-{task_index}"
    shutil.copytree(submission, run / "ingested_program")
    shutil.copytree(root / task["reference_data"], run / "input" / "ref")
    predictions = run / "input" / "res"
    predictions.mkdir(parents=True)
    _run_program(
        root / task["ingestion_program"],
        {
            "$input": root / task["input_data"],
            "$output": predictions,
            "$submission_program": run / "ingested_program",
        },
        run / "ingestion.log",
    )
    scores_dir = run / "output"
    scores_dir.mkdir()
    _run_program(
        root / task["scoring_program"],
        {"$input": run / "input", "$output": scores_dir, "$hidden": run / "input" / "ref"},
        run / "scoring.log",
    )
    return json.loads((scores_dir / "scores.json").read_text())


def try_sample(bundle: Path, work: Path) -> list[dict[str, Any]]:
    """The bundle's own sample submission through every task, in task order."""
    with zipfile.ZipFile(bundle) as z:
        spec = yaml.safe_load(z.read("competition.yaml"))
        z.extractall(work / "sample", [n for n in z.namelist() if n.startswith("sample_submission/")])
    sample = work / "sample" / spec["solutions"][0]["path"]
    return [try_task(bundle, t["index"], sample, work / f"try-{t['index']}") for t in spec["tasks"]]


def _run_program(folder: Path, paths: dict[str, Path], log: Path) -> None:
    command = yaml.safe_load((folder / "metadata.yaml").read_text())["command"]
    for var, path in sorted({**paths, "$program": folder}.items(), key=lambda kv: -len(kv[0])):
        command = command.replace(var, str(path))
    argv = shlex.split(command)
    argv[0] = sys.executable if argv[0].startswith("python") else argv[0]
    with open(log, "w") as f:
        code = subprocess.run(argv, cwd=folder, stdout=f, stderr=subprocess.STDOUT, start_new_session=True).returncode
    if code != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["no output"]
        raise ChallengeError(f"{folder.name} exited with status {code}: {tail[0]} (log: {log})")
