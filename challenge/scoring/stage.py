"""What the sandboxed child is given: the participant's file, the original weights, retain/forget/val and the run
plan. The same files for `challenge score` and the Codabench bundle's input data; test images never leave the
scorer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from challenge.data.dataset import FaceData
from challenge.files import write_atomic, write_with
from challenge.scoring.context import Context
from challenge.scoring.protocol import (
    DATA,
    SPEC,
    SUBMISSION,
    original_name,
)
from challenge.scoring.supervisor import spec_plan
from challenge.training.net import load_net, save_net

PARTS = ("retain", "forget", "val")  # all the child ever gets


def stage(ctx: Context, submission: Path, inputs: Path, todo: list[int], params: dict[str, Any]) -> None:
    """The child's whole world: the file, the original weights, retain/forget/val, and the run plan."""
    shutil.copyfile(submission, inputs / SUBMISSION)
    write_child_inputs(ctx, inputs, todo, SUBMISSION, params)


def write_child_inputs(
    ctx: Context, folder: Path, todo: list[int], submission: str, params: dict[str, Any] | None = None
) -> None:
    """original.pt, data.pt and spec.json: the same files for `challenge score` and the Codabench bundle.
    `params`: the submission's PARAMS values that differ from its own (challenge.scoring.params)."""
    for s in range(ctx.settings.originals):
        net, spec, data_config = load_net(ctx.pool.original_of(s))
        save_net(net, spec, data_config, folder / original_name(s))  # without the original's test metrics
    write_with(folder / DATA, lambda tmp: torch.save(staged_data(ctx.dm), tmp))
    write_atomic(
        folder / SPEC, json.dumps({**spec_plan(ctx.settings, todo, submission, ctx.plan), "params": params or {}})
    )


def staged_data(dm: FaceData) -> dict[str, torch.Tensor]:
    """Retain, forget and val images, numbered from 0 in that order (image_id is this number)."""
    ds = {p: dm.dataset(p) for p in PARTS}
    base = ds["retain"]  # every part indexes the same normalised arrays
    order = torch.cat([ds[p].indices for p in PARTS])
    blob = {
        "images": base.images[order],
        "ages": base.ages[order],
        "groups": base.groups[order],
        "person_ids": base.person_ids[order],
    }
    start = 0
    for p in PARTS:
        blob[p] = torch.arange(start, start + len(ds[p]))
        start += len(ds[p])
    return blob
