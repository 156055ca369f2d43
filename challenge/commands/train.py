"""`challenge train`: the original model, trained on all training images, saved in the run folder."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from challenge.data.dataset import FaceData
from challenge.files import write_json
from challenge.reports.tracking import finish, make_logger
from challenge.training.net import save_net
from challenge.training.recipe import evaluate, fit, majority_rate


def run(cfg: DictConfig) -> dict:
    out = Path(cfg.paths.output_dir)
    dm: FaceData = instantiate(cfg.data)
    dm.setup()
    logger = make_logger(cfg)
    model, seconds = fit(cfg, dm, "train", cfg.seed, logger=logger)
    metrics = {"seconds": seconds, "majority_rate": majority_rate(dm), **evaluate(model.net, dm)}
    if logger:
        logger.log_metrics(
            {f"final/{p}/{k}": v for p, d in metrics.items() if isinstance(d, dict) for k, v in d.items()}
        )
        finish(logger)
    save_net(model.net, model.spec, dm.data_config(), out / "net.pt", metrics=metrics, seed=cfg.seed)
    write_json(out / "metrics.json", metrics, indent=2)
    print(format_metrics(metrics, out))
    return metrics


def format_metrics(metrics: dict, out: Path) -> str:
    rows = [f"{'part':<8} {'acc':>6} {'conf':>6} {'n':>6}"]
    for part in ("retain", "forget", "val", "test"):
        if part in metrics:
            m = metrics[part]
            rows.append(f"{part:<8} {m['acc']:>6.3f} {m['confidence']:>6.3f} {m['n']:>6}")
    rows.append(f"majority-class rate on test: {metrics['majority_rate']:.3f}; trained in {metrics['seconds']:.1f} s")
    rows.append(f"saved {out / 'net.pt'} and {out / 'metrics.json'}")
    return "\n".join(rows)
