"""The age predictor's training recipe: a LightningModule around the bare timm backbone.

Submissions receive the bare backbone (`net`), as on Kaggle in 2023; this module only adds the
loss, optimiser and schedule around it. The net and its file format are challenge.training.net.
"""

from __future__ import annotations

from typing import Any, Callable

import lightning as L
import torch
from torch import nn

from challenge.training.net import NetSpec


class AgePredictor(L.LightningModule):
    """Class-weighted cross-entropy on age groups with Adam and a cosine schedule (the 2023 recipe).

    `channels_last` trains in NHWC, which CPU convolutions run faster (test_resnet at 24 px on one
    thread: about 900 -> 1,250 img/s here); the retrain price of the budget is still timed on the
    net as participants receive it, contiguous (challenge.scoring.calibration.calibrate)."""

    def __init__(
        self,
        net: dict,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        num_classes: int = 10,
        class_weights: list[float] | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["optimizer", "scheduler"])
        self.spec = NetSpec(name=net["name"], num_classes=num_classes, kwargs=dict(net.get("kwargs") or {}))
        self.channels_last = bool(channels_last)
        self.net = self.spec.create()
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.loss = nn.CrossEntropyLoss(weight=weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        image = batch["image"].contiguous(memory_format=torch.channels_last) if self.channels_last else batch["image"]
        logits = self.net(image)
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

    def on_fit_end(self) -> None:
        """Back to the standard layout once trained: a conv's last bits depend on the memory format,
        and every later use (the pool's cached outputs, a saved net reloaded, the participant's copy)
        must see the same net, whichever path it came by."""
        self.net = self.net.to(memory_format=torch.contiguous_format)

    def configure_optimizers(self) -> Any:
        opt = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return opt
        sched = self.scheduler_factory(optimizer=opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
