"""`challenge stability FOLDER...`: the stability table over finished `challenge baseline` runs.

A `challenge baseline -m data.split.seed=0,1,2` multirun writes it by itself when it ends
(challenge.reports.stability.StabilityCallback); this command is for runs started one by one, on
other machines, or a sweep folder whose table should be written again. A sweep folder stands for
its jobs' folders. The table goes into --out (default: this command's run folder).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from challenge.reports.stability import LEADERBOARD_FILE, job_folders, stability_of


def flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "folders",
        type=Path,
        nargs="+",
        help="`challenge baseline` run folders (with leaderboard.json), or a multirun's sweep folder",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where stability.json and stability.html go (default: this command's run folder)",
    )


def run(cfg: DictConfig, args: argparse.Namespace) -> dict[str, Any]:
    folders = [f for given in args.folders for f in _runs(given.expanduser().resolve())]
    out = args.out.expanduser().resolve() if args.out else Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    return stability_of(folders, out)


def _runs(folder: Path) -> list[Path]:
    """The folder itself if it is a run; else its job folders (a sweep), in job order."""
    if (folder / LEADERBOARD_FILE).is_file() or not folder.is_dir():
        return [folder]
    return job_folders(folder) or [folder]
