"""Loaders for every part of the split, with the batch layout of the 2023 Kaggle loaders.

Batches are dicts with `image`, `age_group`, `age`, `person_id` and `image_id`, so submissions
written for Kaggle run unchanged. Images are decoded once (by the source) and cached as uint8;
here they are normalised once per process, so an epoch is only indexing.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader

from challenge.data.batches import drops_last
from challenge.data.faces import FaceDataset, FaceImages
from challenge.data.resident import ResidentBatches
from challenge.data.scenarios import Identities, Scenario
from challenge.data.splits import Split, SplitSpec, age_groups, class_weights, given_split, make_split, relabeled
from challenge.data.trigger import copies_labelled, with_trigger
from challenge.errors import ChallengeError
from challenge.files import content_hash, write_atomic

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FaceSource(Protocol):
    """Anything that yields `FaceImages`; a dataclass, so that its fields identify its output.

    A source whose layout fixes the split (Kaggle's retain/forget/validation CSVs) also has
    `load_with_parts() -> (FaceImages, {"retain"|"forget"|"val"|"test": image indices} | None)`.
    """

    def load(self) -> FaceImages: ...


def source_key(source: FaceSource) -> str:
    """Cache key of a source: its type and fields, plus what it says of its content if it can."""
    fields = asdict(source) if is_dataclass(source) else vars(source)
    payload: dict[str, Any] = {"type": f"{type(source).__module__}.{type(source).__qualname__}", **fields}
    if hasattr(source, "content_key"):
        payload["content"] = source.content_key()
    return content_hash(payload)


class FaceData:
    """One data source, one split, loaders for train/retain/forget/val/test.

    A plain object, not a LightningDataModule: the kit hands Lightning loaders, and the
    sandboxed child and the scorer use it without importing Lightning.
    """

    def __init__(
        self,
        source: FaceSource,
        cache_dir: str,
        split: dict | SplitSpec | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        drop_last: bool = False,
        resident: bool = True,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        forget: Scenario | None = None,
    ) -> None:
        self.source = source
        self.forget = forget or Identities()  # the scenario: conf/forget/, `forget: ${forget}` in a data config
        self.cache_dir = Path(cache_dir)
        self.spec = split if isinstance(split, SplitSpec) else SplitSpec(**_plain(split or {}))
        self.forget.check(self.spec)  # what the settings alone refute (forget.label=12 of 10 groups): before any build
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.drop_last, self.resident = bool(drop_last), bool(resident)
        self.mean, self.std = tuple(mean), tuple(std)
        self.faces: FaceImages | None = None
        self.split: Split | None = None
        self.clean = False  # as_clean(): the training data without a corrective scenario's manipulation
        self._resident: dict[tuple[str, bool, bool, str], ResidentBatches] = {}

    @property
    def data_dir(self) -> Path:
        return self.cache_dir / "data" / f"{type(self.source).__name__.lower()}-{source_key(self.source)}"

    @property
    def split_path(self) -> Path:
        scenario = self.forget.key()  # None for identities: their manifests keep the name earlier kits gave them
        key = content_hash(asdict(self.spec) | ({"forget": scenario} if scenario else {}), 12)
        return self.data_dir / f"split-{key}.json"

    @property
    def num_classes(self) -> int:
        return self.spec.n_age_groups

    def data_config(self) -> dict[str, Any]:
        """What a model needs to know about its inputs; saved with every net file."""
        return {
            "resolution": self.faces.resolution if self.faces is not None else None,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    def prepare_data(self) -> None:
        """Build the cached tensor file and the split manifest once; later runs only read them."""
        faces_path = self.data_dir / "faces.pt"
        parts_path = self.data_dir / "parts.json"
        if not faces_path.exists():
            self._cache_faces(faces_path, parts_path)
        if not self.split_path.exists():
            faces = self._with_traits(FaceImages.load(faces_path))
            split = (
                given_split(faces, json.loads(parts_path.read_text()), self.spec, self.forget)
                if parts_path.exists()
                else make_split(faces, self.spec, self.forget)
            )
            split.save(self.split_path)

    def _cache_faces(self, faces_path: Path, parts_path: Path) -> None:
        """A split given by the source is kept beside the images: every later split spec needs it,
        and only the decoding knows which images survived."""
        if not hasattr(self.source, "load_with_parts"):
            self.source.load().save(faces_path)
            return
        faces, parts = self.source.load_with_parts()
        if parts is not None:
            write_atomic(parts_path, json.dumps(parts))
        faces.save(faces_path)

    def _with_traits(self, faces: FaceImages) -> FaceImages:
        """A source that computes its traits without decoding (SynthFaces) fills them into a cache
        written before the kit kept traits; the pixels, and so the cache key, are unchanged."""
        if faces.traits or not hasattr(self.source, "traits"):
            return faces
        return replace(faces, traits=self.source.traits())

    def setup(self, stage: str | None = None) -> None:
        if self.faces is not None:
            return
        self.prepare_data()
        source = self._with_traits(FaceImages.load(self.data_dir / "faces.pt"))
        split = Split.load(self.split_path)
        # corrective poison: the trigger pasted on the poisoned images (not the clean model's), triggered test copies
        self.faces = with_trigger(source, split.trigger, patched=not self.clean)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        self._images = (self.faces.images.float() / 255.0 - mean) / std
        groups = age_groups(self.faces.ages, split.age_edges)
        if self.clean:  # its own class weights, from the true labels, as its recipe would have computed them
            split = replace(split, class_weights=class_weights(groups[split.train], split.spec.n_age_groups))
        else:  # corrective: the labels the original was trained on
            groups = relabeled(groups, split.relabel.get("index", []), split.relabel.get("group", []))
        self._groups = copies_labelled(groups, split.trigger, len(source))
        self.split = split

    def as_clean(self) -> FaceData:
        """The same split and held-out parts with the training images as they truly are: no mislabelling, no
        trigger (a corrective scenario's clean model trains on it; for other scenarios it is the same data)."""
        clean = copy.copy(self)
        clean.clean, clean.faces, clean.split, clean._resident = True, None, None, {}
        return clean

    def dataset(self, part: str) -> FaceDataset:
        self.setup()
        assert self.faces is not None and self.split is not None
        return FaceDataset(self._images, self.faces.ages, self._groups, self.faces.person_ids, self.split.indices(part))

    def loader(
        self,
        part: str,
        shuffle: bool = False,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> DataLoader:
        """Any part of the split; training parts shuffle, evaluation parts keep the manifest order.

        The kit's own training drops the last short batch (`data.drop_last`): a batch of a few images
        moves BatchNorm's running statistics far from the data's (900 retain images at 64 per batch end
        each epoch in a batch of 4, and such models fit their own training images at 0.81 instead of 1.0).
        """
        ds = self._filled(part)
        bs = batch_size or (self.batch_size if shuffle else self.eval_batch_size)
        return DataLoader(
            ds,
            batch_size=bs,
            shuffle=shuffle,
            num_workers=self.num_workers,
            generator=generator,
            drop_last=drops_last(len(ds), bs, drop_last),
        )

    def batches(
        self, part: str, shuffle: bool = False, drop_last: bool = False, device: torch.device | str = "cpu"
    ) -> ResidentBatches | DataLoader:
        """The kit's own batches of a part (training, the pool's evaluation): the same ones as `loader`,
        from tensors kept on `device` when `data.resident` (challenge.data.resident), else that DataLoader."""
        if not self.resident:
            return self.loader(part, shuffle=shuffle, drop_last=drop_last)
        key = (part, shuffle, drop_last, str(device))  # gathered once per process: each pool model reuses them
        if key not in self._resident:
            bs = self.batch_size if shuffle else self.eval_batch_size
            self._resident[key] = ResidentBatches(self._filled(part), bs, shuffle, drop_last, device=device)
        return self._resident[key]

    def _filled(self, part: str) -> FaceDataset:
        ds = self.dataset(part)
        if len(ds) == 0:
            raise ChallengeError(f"the {part} split is empty: make the dataset larger or change data.split")
        return ds


def _plain(d: Any) -> dict:
    """OmegaConf nodes to plain Python, so that dataclass fields get lists/tuples, not ListConfig."""
    from omegaconf import DictConfig, OmegaConf

    out = OmegaConf.to_container(d, resolve=True) if isinstance(d, DictConfig) else dict(d)
    if out.get("age_range") is not None:
        out["age_range"] = tuple(out["age_range"])
    return out
