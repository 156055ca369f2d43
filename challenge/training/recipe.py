"""One training recipe for the original model, every retrained model, and the benchmarks."""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from challenge.data.dataset import FaceData
from challenge.training.module import AgePredictor
from challenge.training.net import accuracy, mean_confidence, predict_logits

# Data lives in memory: loader worker processes would only add start-up time.
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*Trying to infer the `batch_size`.*")
warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")


def quiet_lightning() -> None:
    """Many fits in one process (the pool): keep the progress bar over models readable."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)


def fit(
    cfg: DictConfig, dm: FaceData, part: str, seed: int, logger: Any = False, validate: bool = True
) -> tuple[AgePredictor, float]:
    """Train from scratch on one part of the split ('train' for the original, 'retain' for the pool).

    The seed fixes both the initialisation and the data order, so each pool member is one sample
    of the retrain-from-scratch distribution and a rerun reproduces it exactly.
    """
    L.seed_everything(seed, workers=True, verbose=False)
    dm.setup()
    model: AgePredictor = instantiate(cfg.model, num_classes=dm.num_classes, class_weights=dm.split.class_weights)
    trainer: L.Trainer = instantiate(
        cfg.trainer, logger=logger, enable_progress_bar=validate and cfg.trainer.get("enable_progress_bar", True)
    )
    device = trainer.strategy.root_device  # resident batches live where the model trains
    start = time.perf_counter()
    trainer.fit(
        model,
        train_dataloaders=dm.batches(part, shuffle=True, drop_last=dm.drop_last, device=device),
        val_dataloaders=dm.batches("val", device=device) if validate and len(dm.dataset("val")) else None,
    )
    return model, time.perf_counter() - start


def evaluate(
    net: torch.nn.Module,
    dm: FaceData,
    parts: tuple[str, ...] = ("retain", "forget", "val", "test", "focus"),
    device: torch.device | str = "cpu",
) -> dict[str, dict[str, float]]:
    """Accuracy and mean true-class confidence per split part; an empty part (most splits' focus) is left out."""
    out = {}
    for part in parts:
        if len(dm.dataset(part)) == 0:
            continue
        logits, targets = predict_logits(net, dm.batches(part, device=device), device)
        out[part] = {
            "acc": accuracy(logits, targets),
            "confidence": mean_confidence(logits, targets),
            "n": len(targets),
        }
    return out


def majority_rate(dm: FaceData, part: str = "test") -> float:
    """Accuracy of always predicting the most frequent training group: the floor a model must beat."""
    dm.setup()
    train_groups = torch.stack([dm.dataset("train")[i]["age_group"] for i in range(len(dm.dataset("train")))])
    top = torch.bincount(train_groups, minlength=dm.num_classes).argmax()
    groups = torch.stack([dm.dataset(part)[i]["age_group"] for i in range(len(dm.dataset(part)))])
    return float((groups == top).float().mean())


def set_threads(threads: int) -> int:
    """A fixed torch thread count: a model's bits depend on it, so it is a setting, never derived from the machine."""
    torch.set_num_threads(int(threads))
    return int(threads)
