"""`fit`'s recipe for M seeds at once, as one packed network (challenge.training.pack): the pool's `pool.pack`.

Each model is what `fit` makes of its seed: the seed is set as `fit` sets it, the model built from
`cfg.model` (the same initialisation from the same random stream), and its epochs' orders drawn
from that seed's stream continued, as its DataLoader would draw them (challenge.data.resident);
the loss, optimiser and schedule are the AgePredictor's own, the optimiser stepping every model's
parameters at once (it acts on each number alone). Only what this loop implements is accepted: any
other trainer key, optimiser or precision is refused in one line (`check_packable`), never ignored.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from challenge.data.dataset import FaceData
from challenge.data.resident import ResidentBatches, sampler_order
from challenge.errors import ChallengeError
from challenge.training.module import AgePredictor
from challenge.training.net import accuracy, evaluating, mean_confidence
from challenge.training.pack import pack_nets, per_model, side_by_side, unpacked_state

# Trainer keys this loop implements; the rest of a default trainer only displays or logs (the pool's
# fingerprint leaves them out: challenge.pool.folder.NOT_OUTPUT), so they are ignored here too.
IMPLEMENTED = {"_target_", "max_epochs", "precision", "deterministic", "accelerator", "devices"}
PRECISIONS = {"32-true": None, "32": None, "bf16-mixed": torch.bfloat16}  # autocast dtype; None: float32
# Optimisers whose step on a packed tensor is their step on each model's part (no norm across a tensor).
ELEMENTWISE = {
    f"torch.optim.{name}" for name in ("Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam")
}
RECIPE = "challenge.training.module.AgePredictor"


@dataclass
class PackedFit:
    """M trained models in one network, with their own AgePredictor (spec, loss) each."""

    net: torch.nn.Module
    modules: list[AgePredictor]
    seconds: float

    def net_of(self, index: int) -> torch.nn.Module:
        """Model `index` as a plain net on the CPU, as `fit` hands it on."""
        net = self.modules[index].net
        net.load_state_dict(unpacked_state(self.net, net, index))
        return net.cpu()


def check_packable(cfg: DictConfig, ignored: set[str]) -> None:
    """Refuse, in one line, a recipe this loop would not follow exactly (`ignored`: keys that cannot change bits)."""
    extra = sorted(set(cfg.trainer) - IMPLEMENTED - ignored)
    if extra:
        raise ChallengeError(f"pool.pack={cfg.pool.pack} does not implement trainer.{extra[0]}: set pool.pack=1")
    if str(cfg.trainer.precision) not in PRECISIONS:
        raise ChallengeError(
            f"pool.pack={cfg.pool.pack} trains in {', '.join(PRECISIONS)} only, not trainer.precision="
            f"{cfg.trainer.precision}: set pool.pack=1"
        )
    if int(cfg.trainer.get("devices", 1)) != 1:
        raise ChallengeError(f"pool.pack={cfg.pool.pack} trains on one device: set trainer.devices=1 or pool.pack=1")
    if cfg.model.get("_target_") != RECIPE:
        raise ChallengeError(f"pool.pack={cfg.pool.pack} trains the {RECIPE} recipe only: set pool.pack=1")
    optimizer = cfg.model.optimizer.get("_target_", "")
    if optimizer not in ELEMENTWISE:
        raise ChallengeError(
            f"pool.pack={cfg.pool.pack} needs an elementwise optimiser ({', '.join(sorted(ELEMENTWISE))}), not "
            f"{optimizer}: set pool.pack=1"
        )


def fit_pack(cfg: DictConfig, dm: FaceData, part: str, seeds: list[int], device: str) -> PackedFit:
    """Train one model per seed on `part`, all at once, on `device`, as `fit` trains each alone."""
    dm.setup()
    modules, streams = [], []
    for seed in seeds:
        L.seed_everything(seed, workers=True, verbose=False)  # as fit: the initialisation, then the data order
        modules.append(instantiate(cfg.model, num_classes=dm.num_classes, class_weights=dm.split.class_weights))
        streams.append(torch.Generator().set_state(torch.get_rng_state()))
    net = pack_nets([m.net.to(memory_format=torch.contiguous_format) for m in modules], _image_shape(dm)).to(device)
    _set_deterministic(cfg.trainer.get("deterministic", False))
    start = time.perf_counter()
    _train(net, modules, streams, dm.batches(part, shuffle=True, drop_last=dm.drop_last, device=device), cfg)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return PackedFit(net.to(memory_format=torch.contiguous_format), modules, time.perf_counter() - start)


def _train(
    net: torch.nn.Module,
    modules: list[AgePredictor],
    streams: list[torch.Generator],
    batches: ResidentBatches,
    cfg: DictConfig,
) -> None:
    """The AgePredictor's training loop (Lightning's automatic optimisation, the schedule stepped per epoch),
    each model on its own batch of the part's device tensors, in its own order."""
    first, m = modules[0], len(modules)
    layout = torch.channels_last if first.channels_last else torch.contiguous_format
    net.to(memory_format=layout).train()
    optimizer = first.optimizer_factory(params=net.parameters())
    scheduler = first.scheduler_factory(optimizer=optimizer) if first.scheduler_factory is not None else None
    images, groups = batches.tensors["image"], batches.tensors["age_group"]
    losses = [module.loss.to(images.device) for module in modules]
    dtype = PRECISIONS[str(cfg.trainer.precision)]
    for _ in range(int(cfg.trainer.max_epochs)):
        orders = [sampler_order(batches.n, stream).to(images.device) for stream in streams]
        for b in range(len(batches)):
            rows = [order[b * batches.batch_size : (b + 1) * batches.batch_size] for order in orders]
            x = side_by_side([images[r] for r in rows]).contiguous(memory_format=layout)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(images.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                logits = per_model(net(x), m)
                loss = sum(fn(out, groups[r]) for fn, out, r in zip(losses, logits, rows))
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()


@torch.no_grad()
def predict_pack(fitted: PackedFit, dm: FaceData, part: str, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every model's logits on a part [M, n, classes] (on the CPU) and the targets: each batch once for all."""
    m, logits, targets = len(fitted.modules), [], []
    with evaluating(fitted.net, device):
        for batch in dm.batches(part, device=device):
            images = batch["image"].to(device)
            logits.append(per_model(fitted.net(side_by_side([images] * m)), m).float().cpu())
            targets.append(batch["age_group"].cpu())
    return torch.cat(logits, 1), torch.cat(targets)


def evaluate_pack(
    fitted: PackedFit, dm: FaceData, parts: tuple[str, ...], device: str
) -> tuple[list[dict[str, dict[str, float]]], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """`evaluate`'s figures per model, and each part's (logits [M, n, classes], targets)."""
    figures: list[dict[str, dict[str, float]]] = [{} for _ in fitted.modules]
    outputs = {}
    for part in parts:
        if len(dm.dataset(part)) == 0:
            continue
        logits, targets = outputs[part] = predict_pack(fitted, dm, part, device)
        for model, out in zip(figures, logits):
            model[part] = {"acc": accuracy(out, targets), "confidence": mean_confidence(out, targets)}
            model[part]["n"] = len(targets)
    return figures, outputs


def _image_shape(dm: FaceData) -> tuple[int, int, int]:
    return tuple(dm.dataset("retain")[0]["image"].shape)  # type: ignore[return-value]


def _set_deterministic(deterministic: bool | str) -> None:
    """What Lightning's Trainer sets for `trainer.deterministic` (its accelerator connector)."""
    if deterministic:
        torch.backends.cudnn.benchmark = False
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    if deterministic == "warn":
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif isinstance(deterministic, bool):
        torch.use_deterministic_algorithms(deterministic)
