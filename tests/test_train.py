"""`challenge train`: the original model, its run folder, W&B files, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from challenge.commands import train
from challenge.training.net import load_net, save_net
from challenge.training.recipe import fit
from tests.conftest import TINY, compose_config, run_cli


def test_train_writes_net_and_metrics_in_the_run_folder(tmp_path: Path) -> None:
    cfg = compose_config("train", TINY, tmp_path)
    metrics = train.run(cfg)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert set(saved) >= {"retain", "forget", "val", "test", "majority_rate", "seconds"}
    net, spec, data_config = load_net(tmp_path / "net.pt")
    assert spec.name == "test_resnet" and spec.num_classes == 10
    assert data_config["resolution"] == 32 and len(data_config["mean"]) == 3
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_same_seed_same_model(tmp_path: Path) -> None:
    a = train.run(compose_config("train", TINY, tmp_path / "a"))
    b = train.run(compose_config("train", TINY, tmp_path / "b"))
    train.run(compose_config("train", [*TINY, "seed=1"], tmp_path / "c"))
    wa, wb, wc = (torch.load(tmp_path / x / "net.pt", weights_only=True)["state_dict"] for x in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert a["test"] == b["test"]


def test_a_net_trained_channels_last_comes_back_contiguous_and_its_saved_copy_gives_the_same_bits(
    tmp_path: Path,
) -> None:
    """The pool caches outputs of the in-memory net; the scorer and a reload use the saved one: same layout, same
    bits."""
    cfg = compose_config("train", [*TINY, "model.channels_last=true"], tmp_path)
    dm = instantiate(cfg.data)
    model, _ = fit(cfg, dm, "train", seed=0, validate=False)
    assert all(p.is_contiguous() for p in model.net.parameters())
    save_net(model.net, model.spec, {}, tmp_path / "net.pt")
    net, _, _ = load_net(tmp_path / "net.pt")
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    model.net.eval(), net.eval()
    assert torch.equal(model.net(x), net(x))
    plain, _ = fit(
        compose_config("train", [*TINY, "model.channels_last=false"], tmp_path / "plain"),
        dm,
        "train",
        seed=0,
        validate=False,
    )
    assert not all(
        torch.equal(a, b) for a, b in zip(plain.net.state_dict().values(), model.net.state_dict().values())
    )  # the option reached the training


def test_original_model_memorises_the_forget_set(tmp_path: Path) -> None:
    """Without a gap between forget and test there would be nothing to unlearn."""
    cfg = compose_config(
        "train",
        ["data.source.n_identities=150", "trainer.max_epochs=8", "logger=none", "data.split.forget_fraction=0.05"],
        tmp_path,
    )
    m = train.run(cfg)
    assert m["forget"]["acc"] > m["test"]["acc"] + 0.1
    assert m["forget"]["confidence"] > m["test"]["confidence"] + 0.05
    assert m["test"]["acc"] > m["majority_rate"]


def test_wandb_offline_run_folder_holds_the_metrics(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cfg = compose_config("train", [*TINY[:-1], "logger=wandb"], tmp_path)
    train.run(cfg)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    files = list(runs[0].glob("run-*.wandb"))
    assert files and files[0].stat().st_size > 0
    blob = files[0].read_bytes()
    assert b"final/forget/acc" in blob and b"train/loss" in blob


# train.run is checked in-process above and the CLI's error path below: a full CLI training runs in `make test-all`
@pytest.mark.slow
def test_cli_trains_with_overrides(tmp_path: Path) -> None:
    r = run_cli("train", *TINY, f"hydra.run.dir={tmp_path}")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "net.pt").exists() and (tmp_path / "metrics.json").exists()
    assert "forget" in r.stdout and "majority-class rate" in r.stdout


def test_cli_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    cases = {
        ("train", "trainer.max_epoch=3"): "did you mean 'trainer.max_epochs'",
        ("train", "model=resnet99"): "Could not find 'model/resnet99'",
        ("train", "model.net.name=resnet19", "logger=none"): "unknown timm model 'resnet19'",
        ("train", "data=surf"): "data.root is required: add data.root=... to the command",
        ("score", "logger=none"): "name the submission file: challenge score path/to/submission.py",
        ("trian",): "unknown command",
    }
    for args, message in cases.items():
        r = run_cli(*args, f"hydra.run.dir={tmp_path}" if args[0] in {"train", "score"} else "--help")
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2, (args, r.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, r.stderr)
