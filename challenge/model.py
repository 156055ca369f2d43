"""The age predictor: a timm backbone, trained with Lightning, saved as a self-describing net file.

Submissions receive the bare backbone (`net`), as on Kaggle in 2023; the LightningModule only adds
the training recipe around it. A net file carries the architecture and the data config (input
size, normalisation) with the weights, so any stage can rebuild the model without a config.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import lightning as L
import timm
import torch
from torch import nn

from challenge.errors import ChallengeError


@dataclass(frozen=True)
class NetSpec:
    """Everything needed to rebuild the architecture."""

    name: str
    num_classes: int
    kwargs: dict[str, Any] = field(default_factory=dict)

    def create(self) -> nn.Module:
        if not timm.is_model(self.name):
            close = difflib.get_close_matches(self.name, timm.list_models(), n=3)
            hint = f" (similar: {', '.join(close)})" if close else ""
            raise ChallengeError(f"unknown timm model {self.name!r}{hint}; set model.net.name to a name from timm.list_models()")
        try:
            return timm.create_model(self.name, pretrained=False, num_classes=self.num_classes, **self.kwargs)
        except TypeError as e:
            raise ChallengeError(f"timm model {self.name!r} rejects model.net.kwargs {self.kwargs}: {e}") from e


class AgePredictor(L.LightningModule):
    """Class-weighted cross-entropy on age groups with Adam and a cosine schedule (the 2023 recipe)."""

    def __init__(
        self,
        net: dict,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        num_classes: int = 10,
        class_weights: list[float] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["optimizer", "scheduler"])
        self.spec = NetSpec(name=net["name"], num_classes=num_classes, kwargs=dict(net.get("kwargs") or {}))
        self.net = self.spec.create()
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.loss = nn.CrossEntropyLoss(weight=weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits = self.net(batch["image"])
        loss = self.loss(logits, batch["age_group"])
        acc = (logits.argmax(1) == batch["age_group"]).float().mean()
        bs = batch["image"].shape[0]
        self.log(f"{stage}/loss", loss, prog_bar=stage == "train", batch_size=bs)
        self.log(f"{stage}/acc", acc, prog_bar=True, batch_size=bs)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> Any:
        opt = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return opt
        sched = self.scheduler_factory(optimizer=opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def save_net(net: nn.Module, spec: NetSpec, data_config: dict[str, Any], path: Path, **extra: Any) -> None:
    """Atomic write of weights + architecture + data config (+ metrics or provenance in `extra`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({"spec": asdict(spec), "data_config": data_config, "state_dict": state, **extra}, tmp)
    os.replace(tmp, path)


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
def predict_logits(net: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and age-group targets over a loader, in loader order, with the net in eval mode."""
    was_training = net.training
    net.eval().to(device)
    logits, targets = [], []
    for batch in loader:
        logits.append(net(batch["image"].to(device)).float().cpu())
        targets.append(batch["age_group"])
    net.train(was_training)
    return torch.cat(logits), torch.cat(targets)


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return float((logits.argmax(1) == targets).float().mean())


def mean_confidence(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean softmax probability of the true group: the memorisation signal unlearning must remove."""
    return float(torch.softmax(logits, 1).gather(1, targets[:, None]).mean())

