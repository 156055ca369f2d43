"""The one in-memory form every face-age source is turned into.

Sources differ (generated, folders of JPEGs, CSV manifests); everything after them
(splits, loaders, training, scoring) sees only `FaceImages`: decoded uint8 pixels at the
configured resolution, so epochs never decode an image twice. `FaceDataset` is the per-item
view loaders batch, in the Kaggle layout; it needs torch only, so the sandboxed child imports it
without Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from challenge.files import write_with


@dataclass(frozen=True)
class FaceImages:
    """M images of people with known ages; `person_ids` make identity-level forgetting possible."""

    images: torch.Tensor  # uint8 [M, 3, H, W]
    ages: torch.Tensor  # int64 [M], years
    person_ids: torch.Tensor  # int64 [M]
    # visible traits a `subgroup` scenario forgets by (challenge.data.scenarios): {name: M values}, as the
    # source knows them (SynthFaces: glasses, hair…; UTKFace: gender, race); empty when it knows none
    traits: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = self.images.shape[0]
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [M, 3, H, W], got {self.images.dtype} {tuple(self.images.shape)}")
        for name in ("ages", "person_ids"):
            t = getattr(self, name)
            if t.shape != (m,):
                raise ValueError(f"{name} must have shape ({m},), got {tuple(t.shape)}")
        for name, values in self.traits.items():
            if len(values) != m:
                raise ValueError(f"trait {name!r} must have {m} values, got {len(values)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def save(self, path: Path) -> None:
        """Write atomically so that a killed process never leaves a truncated cache behind."""
        blob = {"images": self.images, "ages": self.ages, "person_ids": self.person_ids}
        write_with(path, lambda tmp: torch.save({**blob, **({"traits": self.traits} if self.traits else {})}, tmp))

    @classmethod
    def load(cls, path: Path) -> "FaceImages":
        d = torch.load(path, map_location="cpu", weights_only=True)
        return cls(d["images"], d["ages"], d["person_ids"], d.get("traits", {}))


class FaceDataset(torch.utils.data.Dataset):
    """Per-item dicts over pre-normalised images (a plain map-style dataset, so that submissions
    that build their own DataLoader over `loader.dataset` keep working)."""

    def __init__(
        self,
        images: torch.Tensor,
        ages: torch.Tensor,
        groups: torch.Tensor,
        person_ids: torch.Tensor,
        indices: Sequence[int] | torch.Tensor,
    ):
        self.images, self.ages, self.groups, self.person_ids = images, ages, groups, person_ids
        self.indices = torch.as_tensor(indices, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        j = self.indices[i]
        return {
            "image": self.images[j],
            "age_group": self.groups[j],
            "age": self.ages[j],
            "person_id": self.person_ids[j],
            "image_id": j,
        }
