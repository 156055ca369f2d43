"""What the judge measures of one returned model: the strict load into the architecture, then its outputs on
forget, retain and test in fixed batches (the batch size changes the bits: a rule), on scorer.device.

The local scorer, its evaluation alongside the child and the Codabench scoring program all call
`judge_run`, so a run's numbers are the same whichever way it is scored. Besides the accuracies and
the forget confidences the metric takes, a run keeps its confidences on the collateral samples of
retain and test (challenge.scoring.collateral), where the pool kept the retrained models' own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import torch

from challenge.errors import Verdict
from challenge.scoring.collateral import PARTS as COLLATERAL_PARTS
from challenge.scoring.collateral import sampled
from challenge.scoring.metric import cross_entropy_losses, logit_scaled_confidence
from challenge.training.net import NetSpec, accuracy, logits_in_batches

if TYPE_CHECKING:
    from challenge.scoring.settings import Settings

EVAL_PARTS = ("forget", "retain", "test")


def load_weights(spec: NetSpec, path: Path | IO[bytes], index: int) -> torch.nn.Module:
    """weights_only: a hostile file can describe tensors, never run code in the scorer."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever is in the file, it is not a state dict
        raise Verdict(
            "not_a_model", f"run {index}'s weights cannot be read as a state dict ({type(e).__name__})"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise Verdict("not_a_model", f"run {index}'s weights are not a state dict of tensors")
    net = spec.create()
    mismatch = _mismatch(net.state_dict(), state)
    if mismatch:
        raise Verdict(
            "wrong_architecture",
            f"run {index} returned a model that does not fit {spec.name}: {mismatch}; return `net` (changed) or a "
            "model of the same architecture",
        )
    net.load_state_dict(state, strict=True)
    return net


def _mismatch(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> str:
    """What differs, counted and with one example each, so that the verdict stays one line."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    reshaped = [k for k in expected if k in got and got[k].shape != expected[k].shape]
    parts = [f"{len(missing)} missing tensors (e.g. {missing[0]})"] if missing else []
    parts += [f"{len(unexpected)} unexpected (e.g. {unexpected[0]})"] if unexpected else []
    if reshaped:
        k = reshaped[0]
        parts.append(
            f"{len(reshaped)} of another shape (e.g. {k}: {list(got[k].shape)} instead of {list(expected[k].shape)})"
        )
    return ", ".join(parts)


@dataclass(frozen=True)
class RunEval:
    """The judge's own measurements of one returned model."""

    index: int
    seed: int
    retain_acc: float
    forget_acc: float
    test_acc: float
    forget_conf: np.ndarray
    forget_loss: np.ndarray
    test_loss: np.ndarray
    test_correct: np.ndarray  # bool per test image: the scenario's figures on a part of test (its focus images)
    collateral: dict[str, np.ndarray] = field(default_factory=dict)  # confidences on the collateral samples
    # bool per focus image where focus is not part of test (corrective poison's triggered copies); else empty
    focus_correct: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


def reference_tensors(
    dm: Any, device: torch.device | str = "cpu", collateral: dict[str, int] | None = None
) -> dict[str, torch.Tensor]:
    """Images and labels of forget, retain and test, in split order, and the collateral samples of retain and test
    (`collateral`: how many images of each the pool kept outputs on), and focus images that are not test images:
    all the judge evaluates on, moved to the evaluation device once for all the runs."""
    blob: dict[str, torch.Tensor] = {}
    for part in EVAL_PARTS + (("focus",) if detached_focus(dm.split) else ()):
        ds = dm.dataset(part)
        blob[f"{part}_images"], blob[f"{part}_groups"] = ds.images[ds.indices].to(device), ds.groups[ds.indices]
    for part, k in (collateral or {}).items():  # the pool's own sample (challenge.pool.build.collateral_outputs)
        blob[f"collateral_{part}_images"], blob[f"collateral_{part}_groups"] = sampled(
            blob[f"{part}_images"], blob[f"{part}_groups"], k
        )
    return blob


def detached_focus(split: Any) -> bool:
    """Focus images outside test (corrective poison's triggered copies): the judge evaluates them on their own."""
    return bool(len(split.focus)) and not np.isin(split.focus, split.test).all()


@torch.no_grad()
def evaluate(
    net: torch.nn.Module,
    data: dict[str, torch.Tensor],
    index: int,
    seed: int,
    batch_size: int,
    device: torch.device | str | None = None,
) -> RunEval:
    """Forget/retain/test in fixed batches (the batch size changes the bits: a rule), on scorer.device."""
    out: dict[str, Any] = {}
    for part in EVAL_PARTS:
        images, targets = data[f"{part}_images"], data[f"{part}_groups"]
        logits = logits_in_batches(net, images, batch_size, device)
        if not torch.isfinite(logits).all():
            raise Verdict(
                "non_finite", f"run {index} returned a model whose outputs on {part} images contain NaN or infinity"
            )
        out[f"{part}_acc"] = accuracy(logits, targets)
        out |= {"test_correct": (logits.argmax(1) == targets).numpy()} if part == "test" else {}
        if part == "forget":
            out["forget_conf"] = logit_scaled_confidence(logits.numpy(), targets.numpy())
        if part in ("forget", "test"):
            out[f"{part}_loss"] = cross_entropy_losses(logits.numpy(), targets.numpy())
    if "focus_images" in data:  # images no other part holds (triggered copies): the scenario's figure on them
        logits = logits_in_batches(net, data["focus_images"], batch_size, device)
        out["focus_correct"] = (logits.argmax(1) == data["focus_groups"]).numpy()
    out["collateral"] = {}
    for part in (p for p in COLLATERAL_PARTS if f"collateral_{p}_images" in data):
        # the sampled images alone, in the same fixed batches as the pool's (challenge.pool.build): the same bits
        images, targets = data[f"collateral_{part}_images"], data[f"collateral_{part}_groups"]
        logits = logits_in_batches(net, images, batch_size, device)
        out["collateral"][part] = logit_scaled_confidence(logits.numpy(), targets.numpy())
    return RunEval(index=index, seed=seed, **out)


def judge_run(
    spec: NetSpec, weights: Path | IO[bytes], data: dict[str, torch.Tensor], index: int, settings: Settings
) -> RunEval:
    """What the judge measures of one run's weights under these settings: the strict load, then the evaluation
    (the local scorer, its evaluation alongside the child and the Codabench scoring program all call this)."""
    net = load_weights(spec, weights, index)
    return evaluate(net, data, index, settings.seed(index), settings.eval_batch_size, settings.device)
