"""`challenge data preview`: write a contact sheet so a user can see what the model will learn from."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from challenge.data.dataset import FaceData
from challenge.data.synthfaces import contact_sheet


def run(cfg: DictConfig) -> Path:
    dm: FaceData = instantiate(cfg.data)
    dm.setup()
    path = contact_sheet(dm.faces, Path(cfg.paths.output_dir) / "contact_sheet.png", n_identities=cfg.n_identities)
    print(
        f"wrote {path} ({len(dm.faces)} images, {len(dm.faces.person_ids.unique())} identities, cached in "
        f"{dm.data_dir})"
    )
    return path
