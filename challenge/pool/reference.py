"""The reference figures: what the original model and the retrained pool score on each part.

Accuracy and mean true-class confidence on train, retain, forget and test, for the original and
averaged over the pool's retrained models, read from what the pool stored when it trained them
(challenge.pool.folder's entries, the original's file), so that showing them costs no evaluation.
They say what "forgotten" looks like on this pool: an unlearned model should sit near the
retrained row, not the original's. Read by the pool's summary and by the scorer's result.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from challenge.pool.folder import METRIC_PARTS, PoolEntry, with_train

SHOWN = ("acc", "confidence")


def original_metrics(path: Path) -> dict[str, Any]:
    """The metrics saved with the original net; empty for one saved without (a stand-in pool's)."""
    if not path.exists():
        return {}
    return torch.load(path, map_location="cpu", weights_only=True).get("metrics") or {}


def reference(original: dict[str, Any], entries: list[PoolEntry], root: Path) -> dict[str, Any]:
    """{original, retrained: {part: {acc, confidence}}, models, missing}; a figure the pool lacks is
    None, and `missing` says in one line which ones and how to get them (None when complete)."""
    orig = with_train(original)
    table = {
        "original": {p: {k: _number((orig.get(p) or {}).get(k)) for k in SHOWN} for p in METRIC_PARTS},
        "retrained": {p: {k: _mean([_figure(e, p, k) for e in entries]) for k in SHOWN} for p in METRIC_PARTS},
    }
    gaps = [
        f"{who}.{p}.{k}"
        for who, parts in table.items()
        for p, figures in parts.items()
        for k, v in figures.items()
        if v is None
    ]
    missing = None
    if gaps:
        missing = (
            f"the pool at {root} does not store {', '.join(gaps)} (built by an older kit, or a stand-in): "
            "delete that folder and run `challenge pool` to rebuild it with every figure"
        )
    return {**table, "models": len(entries), "missing": missing}


def _figure(entry: PoolEntry, part: str, key: str) -> float | None:
    """One entry's figure; an entry of an older kit still has its retain/forget/test accuracy."""
    value = ((entry.metrics or {}).get(part) or {}).get(key)
    if value is None and key == "acc" and part != "train":
        value = getattr(entry, f"{part}_acc")
    return _number(value)


def _mean(values: list[float | None]) -> float | None:
    """The pool's mean, or None unless every model has the figure (a partial mean would mislead)."""
    if not values or any(v is None for v in values):
        return None
    return float(np.mean(values))


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def format_reference(ref: dict[str, Any]) -> list[str]:
    """One small table: a row per model kind, accuracy and confidence per part."""
    head = "".join(f"{p:>14}" for p in METRIC_PARTS)
    sub = "".join(f"{'acc':>7}{'conf':>7}" for _ in METRIC_PARTS)
    lines = [f"{'':<10}{head}", f"{'':<10}{sub}"]
    for who in ("original", "retrained"):
        cells = "".join(f"{_cell(ref[who][p]['acc'])}{_cell(ref[who][p]['confidence'])}" for p in METRIC_PARTS)
        lines.append(f"{who:<10}{cells}")
    if ref.get("missing"):
        lines.append(ref["missing"])
    return lines


def _cell(value: float | None) -> str:
    return f"{'—':>7}" if value is None else f"{value:>7.3f}"
