"""Train/val/test splits, age groups and the forget set, drawn as the 2023 competition did.

The split is a manifest (indices + identities) saved beside the cached data, so that the
original model, every retrained model, the scorer and the competition all see the same split.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from challenge.data.faces import FaceImages
from challenge.errors import ChallengeError
from challenge.files import write_atomic

HOLDOUTS = ("images", "identities")


@dataclass(frozen=True)
class SplitSpec:
    """How to split; every field changes which images land where, so all go into the fingerprint."""

    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    forget_fraction: float = 0.02  # of the training images, as in the competition
    forget_identities: int | None = None  # a count of identities; overrides forget_fraction
    n_age_groups: int = 10
    age_range: tuple[float, float] | None = None  # equal-width bins over this; None: the data's min..max
    # "images": val and test are images drawn at random, so they share people with train (the 2023 split);
    # "identities": val and test are other people, so test accuracy measures age, not recognition.
    holdout: str = "images"
    # false: the forget people's val/test images join their forget images, so that nothing of them is
    # left to test on and the original's test accuracy is not raised by recognising them
    forget_in_holdout: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction < 1 or not 0 < self.test_fraction < 1:
            raise ChallengeError(
                f"split fractions must be in [0, 1): val_fraction={self.val_fraction}, test_fraction={self.test_fraction}"
            )
        if self.val_fraction + self.test_fraction >= 1:
            raise ChallengeError("data.split.val_fraction + data.split.test_fraction must leave images for training")
        if self.forget_identities is None and not 0 < self.forget_fraction < 1:
            raise ChallengeError(f"data.split.forget_fraction must be in (0, 1), got {self.forget_fraction}")
        if self.forget_identities is not None and self.forget_identities < 1:
            raise ChallengeError(f"data.split.forget_identities must be >= 1, got {self.forget_identities}")
        if self.holdout not in HOLDOUTS:
            raise ChallengeError(f"data.split.holdout must be one of {', '.join(HOLDOUTS)}, got {self.holdout!r}")
        if self.n_age_groups < 2:
            raise ChallengeError(f"data.split.n_age_groups must be >= 2, got {self.n_age_groups}")


@dataclass(frozen=True)
class Split:
    """Image indices of each part; retain and forget partition train and share no identity."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    forget: np.ndarray
    retain: np.ndarray
    forget_identities: list[int]
    age_edges: list[float]
    class_weights: list[float]
    spec: SplitSpec = field(default_factory=SplitSpec)

    PARTS = ("train", "val", "test", "forget", "retain")

    def indices(self, part: str) -> np.ndarray:
        if part not in self.PARTS:
            raise ValueError(f"unknown split part {part!r}; expected one of {self.PARTS}")
        return getattr(self, part)

    def save(self, path: Path) -> None:
        """Atomic write: a manifest is either complete or absent."""
        data = {p: self.indices(p).tolist() for p in self.PARTS}
        data |= {
            "forget_identities": self.forget_identities,
            "age_edges": self.age_edges,
            "class_weights": self.class_weights,
            "spec": asdict(self.spec),
        }
        write_atomic(path, json.dumps(data))

    @classmethod
    def load(cls, path: Path) -> "Split":
        d = json.loads(path.read_text())
        spec = d.pop("spec")
        if spec.get("age_range") is not None:
            spec["age_range"] = tuple(spec["age_range"])
        arrays = {p: np.asarray(d.pop(p), dtype=np.int64) for p in cls.PARTS}
        return cls(**arrays, **d, spec=SplitSpec(**spec))


def age_edges(ages: torch.Tensor, spec: SplitSpec) -> list[float]:
    """Equal-width bins, as the competition binned ages into groups."""
    lo, hi = spec.age_range if spec.age_range is not None else (float(ages.min()), float(ages.max()))
    if hi <= lo:
        raise ChallengeError(f"all ages lie in [{lo}, {hi}]: age groups need a range of ages")
    return np.linspace(lo, hi, spec.n_age_groups + 1).tolist()


def age_groups(ages: torch.Tensor, edges: list[float]) -> torch.Tensor:
    """Bin index per image; the last bin is closed so the oldest age belongs to the last group."""
    inner = torch.tensor(edges[1:-1], dtype=torch.float64)
    return torch.bucketize(ages.to(torch.float64), inner, right=True)


def make_split(faces: FaceImages, spec: SplitSpec) -> Split:
    """Split images (or whole people) at random, then take whole identities of the training images as the forget set."""
    rng = np.random.default_rng(spec.seed)
    m = len(faces)
    order = rng.permutation(m) if spec.holdout == "images" else _people_order(faces.person_ids.numpy(), rng)
    n_test, n_val = round(m * spec.test_fraction), round(m * spec.val_fraction)
    if spec.holdout == "identities":  # cut at a person's boundary, so nobody straddles two parts
        ids = faces.person_ids.numpy()[order]
        n_test = _boundary(ids, n_test)
        n_val = _boundary(ids, n_test + n_val) - n_test
    test, val, train = np.sort(order[:n_test]), np.sort(order[n_test : n_test + n_val]), np.sort(order[n_test + n_val :])
    forget_ids = _draw_forget_identities(faces.person_ids.numpy()[train], spec, rng)
    if not spec.forget_in_holdout:
        ids = faces.person_ids.numpy()
        moved = [part[np.isin(ids[part], forget_ids)] for part in (val, test)]
        val, test = (part[~np.isin(ids[part], forget_ids)] for part in (val, test))
        train = np.sort(np.concatenate([train, *moved]))
    return _assemble(faces, train, val, test, forget_ids, spec)


def _people_order(person_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Image indices grouped by person, people in random order, each person's images in index order."""
    people, person = np.unique(person_ids, return_inverse=True)
    rank = rng.permutation(len(people))  # person p's place in the random order
    return np.lexsort((np.arange(len(person_ids)), rank[person]))


def _boundary(ordered_ids: np.ndarray, n: int) -> int:
    """The first index >= n where a new person starts (or the end)."""
    while 0 < n < len(ordered_ids) and ordered_ids[n] == ordered_ids[n - 1]:
        n += 1
    return n


def given_split(faces: FaceImages, parts: Mapping[str, Sequence[int]], spec: SplitSpec) -> Split:
    """A split the data's layout fixes (Kaggle's retain/forget/validation CSVs): image indices per
    part; only the age bins come from `spec`."""
    retain, forget, val, test = (np.sort(np.asarray(parts[p], dtype=np.int64)) for p in ("retain", "forget", "val", "test"))
    forget_ids = np.unique(faces.person_ids.numpy()[forget])
    if np.isin(faces.person_ids.numpy()[retain], forget_ids).any():
        raise ValueError("the given retain part holds images of forget identities")
    return _assemble(faces, np.union1d(retain, forget), val, test, forget_ids, spec)


def _assemble(faces: FaceImages, train: np.ndarray, val: np.ndarray, test: np.ndarray, forget_ids: np.ndarray, spec: SplitSpec) -> Split:
    """Forget = every training image of the forget identities; bins and weights as the competition's."""
    in_forget = np.isin(faces.person_ids.numpy()[train], forget_ids)
    edges = age_edges(faces.ages, spec)
    return Split(
        train=train,
        val=val,
        test=test,
        forget=train[in_forget],
        retain=train[~in_forget],
        forget_identities=sorted(int(i) for i in forget_ids),
        age_edges=edges,
        class_weights=class_weights(age_groups(faces.ages[train], edges), spec.n_age_groups),
        spec=spec,
    )


def _draw_forget_identities(train_ids: np.ndarray, spec: SplitSpec, rng: np.random.Generator) -> np.ndarray:
    """Identities in random order until the count, or the fraction of training images, is reached."""
    ids, counts = np.unique(train_ids, return_counts=True)
    if len(ids) < 2:
        raise ChallengeError("the training images hold fewer than 2 identities: nothing could be both forgotten and retained")
    perm = rng.permutation(len(ids))
    if spec.forget_identities is not None:
        if spec.forget_identities >= len(ids):
            raise ChallengeError(
                f"data.split.forget_identities={spec.forget_identities} but the training images hold only {len(ids)} identities"
            )
        return ids[perm[: spec.forget_identities]]
    target = spec.forget_fraction * len(train_ids)
    n = int(np.searchsorted(np.cumsum(counts[perm]), target) + 1)
    return ids[perm[: min(n, len(ids) - 1)]]





def class_weights(groups: torch.Tensor, n_groups: int) -> list[float]:
    """1/count per group, as the competition weighted its loss; an empty group gets weight 0."""
    counts = torch.bincount(groups, minlength=n_groups).to(torch.float64)
    weights = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
    return (weights / weights.sum() * n_groups).tolist()
