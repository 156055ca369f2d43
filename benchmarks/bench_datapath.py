"""The data path and what the full 2023 setting costs here: old (DataLoader) against new (resident) in one run.

    python benchmarks/bench_datapath.py [--images 30000] [--epochs 1]

1. Batches alone: one epoch of the retain set's training batches, DataLoader over per-item dicts
   against challenge.data.resident (and, on a GPU, the DataLoader's per-batch copy to it).
2. Training (the kit's `fit`, single-threaded on a CPU as the pool trains) for test_resnet and
   ResNet-18 at 32x32 through both paths, NCHW and NHWC (`model.channels_last`), img/s and ratios.
3. The scorer's own work per run (strict load, forget/retain/test inference, the cached evaluation)
   before (on the CPU, whatever the pool's device) and now (on the pool's device, the data moved once), against
   the template's run time (one epoch of fine-tuning) on the default preset, as bench_sandbox's N=16.
4. The full 2023 setting projected from those rates: a pool of 512 ResNet-18 x 30 epochs (and the
   ceiling's 512 more) on a CASIA-SURF-sized set of --images images, and one submission at N=512.

Every path and device appears in the same run, so that the ratios hold however loaded the machine is.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from challenge.cli import CONF_DIR
from challenge.data.dataset import FaceData
from challenge.pool.folder import device_type
from challenge.scoring.evaluation import evaluate, load_weights, reference_tensors
from challenge.scoring.run import loaders
from challenge.scoring.submission import compile_submission, load_submission
from challenge.scoring.work import write_eval
from challenge.training.net import NetSpec, logits_in_batches
from challenge.training.recipe import fit, quiet_lightning, set_threads

TEMPLATE = Path(__file__).resolve().parent.parent / "submissions" / "template.py"
# CASIA-SURF has 1,000 subjects; the 2023 challenge used its live RGB faces, some tens of thousands of
# images, at 32x32. 30,000 is the assumption (--images): the order of magnitude is what the projection needs.
SURF_IMAGES = 30_000


def config(cache: str, overrides: list[str], name: str = "pool") -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(name, overrides=["logger=none", "trainer.enable_progress_bar=false", *overrides])
    with open_dict(cfg):
        cfg.paths.cache_dir = cfg.paths.output_dir = cache
    return cfg


def devices() -> list[str]:
    return ["cpu", "gpu"] if torch.cuda.is_available() else ["cpu"]


def data(cfg: DictConfig) -> FaceData:
    dm = instantiate(cfg.data)
    dm.setup()
    return dm


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# -- 1. batches alone ------------------------------------------------------------------------------
def batch_speed(cache: str) -> None:
    print("batches alone: one epoch of retain training batches (64 images each), images/s")
    for device in devices():
        cfg = config(cache, ["data.source.resolution=32", f"trainer.accelerator={device}"])
        target = torch.device("cuda" if device == "gpu" else "cpu")
        rates = {}
        for resident in (False, True):
            dm = data(cfg)
            dm.resident = resident
            batches = dm.batches("retain", shuffle=True, drop_last=True, device=target)
            n = len(batches) * dm.batch_size
            best = float("inf")
            for _ in range(5):
                t = time.perf_counter()
                for batch in batches:
                    batch["image"].to(target), batch["age_group"].to(target)
                sync()
                best = min(best, time.perf_counter() - t)
            rates[resident] = n / best
        print(
            f"  {device:<4} DataLoader {rates[False]:>10,.0f}   resident {rates[True]:>12,.0f}   "
            f"x{rates[True] / rates[False]:.1f}"
        )


# -- 2. training -----------------------------------------------------------------------------------
def train_speed(cache: str, epochs: int) -> dict[str, dict[str, float]]:
    """img/s of `fit` per device and model, for each path and layout; the new path's best feeds the projection."""
    print(
        f"\ntraining, the kit's fit at 32x32, {epochs} epoch(s), img/s (CPU: {torch.get_num_threads()} thread, as the "
        "pool trains)"
    )
    print(
        f"  {'':<18}{'old NCHW':>10}{'new NCHW':>10}{'old NHWC':>10}{'new NHWC':>10}   new/old   NHWC/NCHW (new)   "
        "NHWC weights = NCHW weights"
    )
    best: dict[str, dict[str, float]] = {}
    for device in devices():
        for model in ("test_resnet", "resnet18"):
            rates, weights = {}, {}
            for channels_last in (False, True):
                for resident in (False, True):
                    cfg = config(
                        cache,
                        [
                            f"model={model}",
                            "data.source.resolution=32",
                            f"trainer.max_epochs={epochs}",
                            f"trainer.accelerator={device}",
                            f"model.channels_last={str(channels_last).lower()}",
                            f"data.resident={str(resident).lower()}",
                        ],
                    )
                    dm = data(cfg)
                    if not rates:
                        fit(cfg, dm, "retain", seed=0, validate=False)  # warm-up: allocator, kernels
                    seconds = float("inf")
                    for seed in (1, 2):
                        trained, took = fit(cfg, dm, "retain", seed=seed, validate=False)
                        seconds = min(seconds, took)
                    weights[channels_last] = trained.net.state_dict()
                    rates[(resident, channels_last)] = (
                        len(dm.batches("retain", shuffle=True, drop_last=True)) * dm.batch_size * epochs / seconds
                    )
            cells = "".join(f"{rates[(r, c)]:>10,.0f}" for c in (False, True) for r in (False, True))
            gain = max(rates[(True, False)] / rates[(False, False)], rates[(True, True)] / rates[(False, True)])
            layout = rates[(True, True)] / rates[(True, False)]
            same = all(torch.equal(weights[False][k], weights[True][k]) for k in weights[False])
            print(
                f"  {device + ' ' + model:<18}{cells}   x{gain:.2f}     x{layout:.2f}             "
                f"{'yes' if same else 'no: NHWC changes the pool'}"
            )
            best.setdefault(device, {})[model] = max(rates[(True, False)], rates[(True, True)])
    return best


# -- 3. the scorer's work per run --------------------------------------------------------------------
def scorer_overhead(cache: str, runs: int = 4) -> None:
    """Per run: the template in the child's loaders, then what the scorer does with its weights, old and new."""
    cfg = config(cache, [], "score")
    dm = data(cfg)
    set_threads(int(cfg.scorer.threads))
    spec = NetSpec(cfg.model.net.name, dm.num_classes)
    torch.manual_seed(0)
    original = spec.create()
    parts = {p: dm.dataset(p) for p in ("retain", "forget", "val")}
    unlearning = load_submission(TEMPLATE, compile_submission(TEMPLATE))
    device = device_type(cfg)
    old_data, new_data = reference_tensors(dm), reference_tensors(dm, device)
    folder = Path(tempfile.mkdtemp(prefix="bench-datapath-", dir=cache))
    times: dict[str, float] = {"template": 0.0, "before": 0.0, "now": 0.0}
    for run in range(runs):
        net = NetSpec(spec.name, spec.num_classes).create()
        net.load_state_dict(original.state_dict())
        t = time.perf_counter()
        unlearning(net, *loaders(parts, dm.batch_size, run))
        times["template"] += time.perf_counter() - t
        weights = folder / f"run-{run}.pt"
        torch.save(net.state_dict(), weights)
        results = {}
        for label, blob, where in (("before", old_data, None), ("now", new_data, device)):
            t = time.perf_counter()
            results[label] = evaluate(load_weights(spec, weights, run), blob, run, run, dm.eval_batch_size, where)
            write_eval(folder / f"{label}-{run}.npz", results[label])
            times[label] += time.perf_counter() - t
        assert _same(results["before"], results["now"]), "the new evaluation changed the bits"
    n_eval = sum(len(dm.dataset(p)) for p in ("forget", "retain", "test"))
    template = times["template"] / runs
    print(
        f"\nscorer's own work per run (default preset, {n_eval} forget+retain+test images, {torch.get_num_threads()} "
        f"thread, on {device}),"
        f" against the template's run ({len(parts['retain'])} retain images, 1 epoch): mean of {runs} runs"
    )
    for label in ("before", "now"):
        per_run = times[label] / runs
        print(
            f"  {label:<7}{per_run:>8.3f} s per run = {100 * per_run / template:5.1f}% of the template's "
            f"{template:.3f} s"
        )
    print("  (the same bits before and now: checked on every run's forget confidences)")
    print(
        "  a scoring waits for little of it: on a CPU with a core to spare the judge evaluates run i while the child "
        "runs i + 1\n"
        "  (challenge.scoring.alongside); bench_sandbox.py prints what a real N=16 scoring waited for"
    )


def _same(a: Any, b: Any) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in ("retain_acc", "forget_acc", "test_acc")) and all(
        getattr(a, f).tobytes() == getattr(b, f).tobytes() for f in ("forget_conf", "forget_loss", "test_loss")
    )


def eval_speed(cache: str, device: str, model: str) -> float:
    """Inference img/s at the pool's evaluation batch size, on the pool's evaluation device."""
    cfg = config(cache, [f"model={model}", "data.source.resolution=32", f"trainer.accelerator={device}"])
    dm = data(cfg)
    device = device_type(cfg)
    net = NetSpec(model, dm.num_classes).create()
    images = reference_tensors(dm, device)["retain_images"]
    logits_in_batches(net, images, dm.eval_batch_size, device)
    sync()
    t = time.perf_counter()
    logits_in_batches(net, images, dm.eval_batch_size, device)
    sync()
    return len(images) / (time.perf_counter() - t)


# -- 4. the full 2023 setting ------------------------------------------------------------------------
def projection(cache: str, train: dict[str, dict[str, float]], images: int) -> None:
    cfg = config(cache, ["experiment=neurips2023"])
    split = cfg.data.split
    test, val = int(images * split.test_fraction), int(images * split.val_fraction)
    forget = 15 * 30  # 15 identities of about 30 images each (30,000 / 1,000 subjects)
    retain = images - test - val - forget
    epochs, size = int(cfg.trainer.max_epochs), int(cfg.pool.size)
    cores = os.cpu_count() or 1
    print(
        f"\nthe full 2023 setting: {images:,} images at 32x32 (assumed CASIA-SURF size: 1,000 subjects x ~30 faces), "
        f"retain {retain:,}, forget {forget}, test {test:,}; ResNet-18, {epochs} epochs, pool {size} (+{size} for the "
        "ceiling)"
    )
    for device, models in train.items():
        rate, infer = models["resnet18"], eval_speed(cache, device, "resnet18")
        model_s = retain * epochs / rate + (retain + forget + test) / infer
        parallel = cores if device == "cpu" else 1
        pool_h = size * model_s / parallel / 3600
        template_s = retain / rate  # one epoch of fine-tuning, at the kit's training speed
        budget_s = 0.2 * retain * epochs / rate
        judge_s = (retain + forget + test) / infer
        where = f"{cores} single-thread processes" if device == "cpu" else "one GPU"
        print(
            f"  {device}: ResNet-18 trains {rate:,.0f} img/s, infers {infer:,.0f} img/s; one retrained model "
            f"{model_s / 60:.1f} min"
        )
        print(f"    pool of {size}: {pool_h:,.1f} h on {where} ({2 * pool_h:,.1f} h with the ceiling)")
        # One submission's runs follow one another in one child. On a CPU with a core to spare the judge evaluates
        # run i beside run i + 1 (challenge.scoring.alongside), so the scoring waits for the last evaluation only.
        waited = judge_s if device == "cpu" and cores >= 2 else size * judge_s
        print(
            f"    one submission at N={size}: template {(size * template_s + waited) / 3600:,.1f} h, "
            f"a method using its whole budget (20% of a retrain) {(size * budget_s + waited) / 3600:,.1f} h; "
            f"the scorer's evaluation {size * judge_s / 3600:,.2f} h of work ({100 * judge_s / template_s:.0f}% of a "
            "template run), "
            f"{'beside the runs' if waited == judge_s else 'after the runs'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images",
        type=int,
        default=SURF_IMAGES,
        help=f"images of the CASIA-SURF-sized set to project for (default {SURF_IMAGES:,})",
    )
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timed fit (default 1)")
    args = parser.parse_args()
    quiet_lightning()
    set_threads(1)
    gpu = (
        torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else "none here (GPU rows are printed only where one is present)"
    )
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, GPU: {gpu}")
    with tempfile.TemporaryDirectory() as cache:
        batch_speed(cache)
        train = train_speed(cache, args.epochs)
        scorer_overhead(cache)
        projection(cache, train, args.images)


if __name__ == "__main__":
    main()
