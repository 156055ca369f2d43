"""The network a submission receives, and the self-describing file it travels in.

A net file carries the architecture and the data config (input size, normalisation) with the
weights, so any stage can rebuild the model without a config. Nothing here imports Lightning:
the sandboxed ingestion child and the scorer load nets on every run, and Lightning's import
would be most of their start-up.
"""

from __future__ import annotations

import difflib
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import timm
import torch
from torch import nn

from challenge.errors import ChallengeError
from challenge.files import write_with


@dataclass(frozen=True)
class NetSpec:
    """Everything needed to rebuild the architecture."""

    name: str
    num_classes: int
    kwargs: dict[str, Any] = field(default_factory=dict)

    def create(self) -> nn.Module:
        check_model_name(self.name)
        try:
            return timm.create_model(self.name, pretrained=False, num_classes=self.num_classes, **self.kwargs)
        except TypeError as e:
            raise ChallengeError(f"timm model {self.name!r} rejects model.net.kwargs {self.kwargs}: {e}") from e


def check_model_name(name: str) -> None:
    """A typo in model.net.name, reported with the nearest names timm knows."""
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise ChallengeError(f"unknown timm model {name!r}{hint}; set model.net.name to a name from timm.list_models()")


def save_net(net: nn.Module, spec: NetSpec, data_config: dict[str, Any], path: Path, **extra: Any) -> None:
    """Atomic write of weights + architecture + data config (+ metrics or provenance in `extra`)."""
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    write_with(
        path,
        lambda tmp: torch.save({"spec": asdict(spec), "data_config": data_config, "state_dict": state, **extra}, tmp),
    )


def load_net(path: Path) -> tuple[nn.Module, NetSpec, dict[str, Any]]:
    """Rebuild a saved net; weights only (no pickled code), so a net file cannot run anything."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ChallengeError(f"no model at {path}: train it first (challenge train / challenge pool)") from None
    spec = NetSpec(**blob["spec"])
    net = spec.create()
    net.load_state_dict(blob["state_dict"])
    return net, spec, blob["data_config"]


@torch.no_grad()
def predict_logits(
    net: nn.Module, batches: Iterable[dict[str, torch.Tensor]], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and age-group targets over batches (a DataLoader or challenge.data.resident's), in their
    order, with the net in eval mode on `device`; logits come back on the CPU."""
    logits, targets = [], []
    with evaluating(net, device):
        for batch in batches:
            logits.append(net(batch["image"].to(device)).float().cpu())
            targets.append(batch["age_group"].cpu())
    return torch.cat(logits), torch.cat(targets)


@torch.no_grad()
def logits_in_batches(
    net: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Logits of images in fixed batches (the batch size changes the bits), on the CPU; `device` None:
    where the net is. The layout stays the standard one: NHWC inference is faster on a CPU (1.6x for
    test_resnet here) but changes the last bits of trained nets' logits, so the pool's would move."""
    device = device if device is not None else next(net.parameters()).device
    with evaluating(net, device):
        return torch.cat(
            [net(images[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
        )


@contextmanager
def evaluating(net: nn.Module, device: torch.device | str) -> Iterator[None]:
    """The net in eval mode on `device`, back in its former mode afterwards."""
    was_training = net.training
    net.eval().to(device)
    try:
        yield
    finally:
        net.train(was_training)


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return float((logits.argmax(1) == targets).float().mean())


def mean_confidence(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean softmax probability of the true group: the memorisation signal unlearning must remove."""
    return float(torch.softmax(logits, 1).gather(1, targets[:, None]).mean())
