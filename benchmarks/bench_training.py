"""Training speed: Lightning (the kit's `fit`) against a plain PyTorch loop of the same recipe.

Prints images/s and achieved GFLOP/s per model for the default preset and ResNet-18 at 32x32,
and Lightning's overhead (target: within 10%). Both loops train the same model from the same
seed on the same retain set with the same optimizer, schedule, batch size and epochs.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict
from torch.utils.flop_counter import FlopCounterMode

from challenge.cli import CONF_DIR
from challenge.training.recipe import fit, quiet_lightning

EPOCHS = int(os.environ.get("BENCH_EPOCHS", "3"))
PRESETS = {"default (test_resnet)": [], "resnet18": ["model=resnet18"]}


def config(overrides: list[str], cache: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("pool", overrides=[*overrides, "logger=none", f"trainer.max_epochs={EPOCHS}", "trainer.enable_progress_bar=false"])
    with open_dict(cfg):
        cfg.paths.cache_dir = cache
        cfg.paths.output_dir = cache
    return cfg


def flops_per_image(model: torch.nn.Module, batch: dict) -> float:
    """Forward + backward FLOPs of one training step, per image (counted, not estimated)."""
    with FlopCounterMode(display=False) as counter:
        model(batch["image"]).sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch["image"].shape[0]


def plain_loop(cfg, dm, seed: int) -> float:
    """The same recipe without Lightning: what a careful user would write by hand."""
    L.seed_everything(seed, verbose=False)
    module = instantiate(cfg.model, num_classes=dm.num_classes, class_weights=dm.split.class_weights)
    opt = module.optimizer_factory(params=module.parameters())
    sched = module.scheduler_factory(optimizer=opt)
    loader = dm.loader("retain", shuffle=True)
    start = time.perf_counter()
    module.train()
    for _ in range(cfg.trainer.max_epochs):
        for batch in loader:
            opt.zero_grad(set_to_none=True)
            loss = module.loss(module.net(batch["image"]), batch["age_group"])
            loss.backward()
            opt.step()
        sched.step()
    return time.perf_counter() - start


def bench(name: str, overrides: list[str], cache: str) -> None:
    cfg = config(overrides, cache)
    dm = instantiate(cfg.data)
    dm.setup()
    images = len(dm.dataset("retain")) * cfg.trainer.max_epochs
    model = instantiate(cfg.model, num_classes=dm.num_classes)
    flops = flops_per_image(model.net, next(iter(dm.loader("retain", shuffle=True))))
    plain_loop(cfg, dm, seed=0)  # warm-up: allocator and oneDNN kernels
    t_plain = min(plain_loop(cfg, dm, seed=s) for s in (1, 2))
    t_light = min(fit(cfg, dm, "retain", seed=s, validate=False)[1] for s in (1, 2))
    for label, t in (("plain PyTorch", t_plain), ("Lightning fit", t_light)):
        print(f"{name:<22} {label:<14} {t:7.2f} s  {images / t:8.0f} img/s  {flops * images / t / 1e9:6.2f} GFLOP/s")
    print(f"{name:<22} Lightning overhead: {100 * (t_light - t_plain) / t_plain:+.1f}%  "
          f"({flops / 1e6:.1f} MFLOP/img train step, {images} images = {len(dm.dataset('retain'))} x {cfg.trainer.max_epochs} epochs, {torch.get_num_threads()} threads)")


def main() -> None:
    quiet_lightning()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu, epochs {EPOCHS}")
    with tempfile.TemporaryDirectory() as cache:
        for name, overrides in PRESETS.items():
            if len(sys.argv) > 1 and sys.argv[1] not in name:
                continue
            bench(name, overrides, cache)


if __name__ == "__main__":
    main()
