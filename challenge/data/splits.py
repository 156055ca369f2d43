"""Train/val/test splits, age groups and the forget set, drawn as the 2023 competition did (the
forget set as the scenario says, challenge.data.scenarios).

The split is a manifest (indices + identities) saved beside the cached data, so that the
original model, every retrained model, the scorer and the competition all see the same split.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from challenge.checks import Rule, check_value, refuse
from challenge.data.faces import FaceImages
from challenge.data.scenarios import Identities, Scenario, Selection
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
        """Each value's type and range (as challenge.checks says them), then what no single value shows."""
        fraction = Rule(float, gt=0, lt=1)
        rules = {
            "seed": Rule(int, ge=0),
            "val_fraction": Rule(float, ge=0, lt=1),
            "test_fraction": fraction,
            "forget_identities": Rule(int, ge=1, nullable=True),
            "n_age_groups": Rule(int, ge=2),
            "holdout": Rule(str, choices=HOLDOUTS),
            "forget_in_holdout": Rule(bool),
        }
        if self.forget_identities is None:  # else the count decides and the fraction is not read
            rules["forget_fraction"] = fraction
        for name, rule in rules.items():
            check_value(f"data.split.{name}", getattr(self, name), rule)
        if self.val_fraction + self.test_fraction >= 1:
            problem = f"+ data.split.test_fraction={self.test_fraction} must leave images for training: make it < 1"
            raise refuse("data.split.val_fraction", self.val_fraction, problem)


@dataclass(frozen=True)
class Split:
    """Image indices of each part; retain and forget partition train (and share no identity in the
    identities scenario), focus is part of test (but for poison: triggered copies of test images)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    forget: np.ndarray
    retain: np.ndarray
    forget_identities: list[int]  # the people with a forget image (identities: whom the forget set is all of)
    age_edges: list[float]
    class_weights: list[float]
    spec: SplitSpec = field(default_factory=SplitSpec)
    # test images of what was forgotten (a class, a subgroup, the forget people), reported on their own;
    # empty in manifests of earlier kits, whose scenario was identities
    focus: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    scenario: dict[str, Any] = field(default_factory=lambda: Identities().settings())
    # {"index": training images, "group": the label the original was trained on}: corrective confusion's
    # mislabelled images; empty for every other scenario
    relabel: dict[str, list[int]] = field(default_factory=dict)
    # corrective poison: {"patch": pixels, "target": group, "patched": training images, "copies": test images}
    # (challenge.data.trigger); focus is then the copies, numbered after the source's images; empty otherwise
    trigger: dict[str, Any] = field(default_factory=dict)

    PARTS = ("train", "val", "test", "forget", "retain", "focus")

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
            "scenario": self.scenario,
            "relabel": self.relabel,
            "trigger": self.trigger,
        }
        write_atomic(path, json.dumps(data))

    @classmethod
    def load(cls, path: Path) -> "Split":
        d = json.loads(path.read_text())
        spec = d.pop("spec")
        if spec.get("age_range") is not None:
            spec["age_range"] = tuple(spec["age_range"])
        arrays = {p: np.asarray(d.pop(p, []), dtype=np.int64) for p in cls.PARTS}
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


def make_split(faces: FaceImages, spec: SplitSpec, scenario: Scenario | None = None) -> Split:
    """Split images (or whole people) at random, then let the scenario (challenge.data.scenarios; the
    default forgets whole identities) choose the forget set among the training images."""
    scenario = scenario or Identities()
    scenario.check(spec)
    rng = np.random.default_rng(spec.seed)
    m = len(faces)
    order = rng.permutation(m) if spec.holdout == "images" else _people_order(faces.person_ids.numpy(), rng)
    n_test, n_val = round(m * spec.test_fraction), round(m * spec.val_fraction)
    if spec.holdout == "identities":  # cut at a person's boundary, so nobody straddles two parts
        ids = faces.person_ids.numpy()[order]
        n_test = _boundary(ids, n_test)
        n_val = _boundary(ids, n_test + n_val) - n_test
    parts = (
        np.sort(order[n_test + n_val :]),
        np.sort(order[n_test : n_test + n_val]),
        np.sort(order[:n_test]),
    )
    edges = age_edges(faces.ages, spec)
    chosen = scenario.select(faces, parts, spec, age_groups(faces.ages, edges).numpy(), rng)
    return _assemble(faces, chosen, spec, scenario)


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


def given_split(
    faces: FaceImages, parts: Mapping[str, Sequence[int]], spec: SplitSpec, scenario: Scenario | None = None
) -> Split:
    """A split the data's layout fixes (Kaggle's retain/forget/validation CSVs): image indices per
    part; only the age bins come from `spec`, and the scenario can only be identities."""
    if scenario is not None and scenario.name != Identities.name:
        problem = "but this data's layout (Kaggle's retain/forget CSVs) fixes the forget set"
        fix = "use forget=identities, or name one CSV of all images with data.source.csv=…"
        raise refuse("forget", scenario.name, f"{problem}: {fix}")
    retain, forget, val, test = (
        np.sort(np.asarray(parts[p], dtype=np.int64)) for p in ("retain", "forget", "val", "test")
    )
    forget_ids = np.unique(faces.person_ids.numpy()[forget])
    if np.isin(faces.person_ids.numpy()[retain], forget_ids).any():
        raise ValueError("the given retain part holds images of forget identities")
    train = np.union1d(retain, forget)
    in_forget = np.isin(faces.person_ids.numpy()[train], forget_ids)
    focus = test[np.isin(faces.person_ids.numpy()[test], forget_ids)]
    return _assemble(faces, Selection(train, val, test, train[in_forget], focus), spec, Identities())


def _assemble(faces: FaceImages, chosen: Selection, spec: SplitSpec, scenario: Scenario) -> Split:
    """Retain = the training images not forgotten; bins and weights as the competition's."""
    train = chosen.train
    edges = age_edges(faces.ages, spec)
    groups = relabeled(age_groups(faces.ages, edges), chosen.relabeled, chosen.labels)
    return Split(
        train=train,
        val=chosen.val,
        test=chosen.test,
        forget=chosen.forget,
        retain=np.setdiff1d(train, chosen.forget),
        focus=chosen.focus,
        forget_identities=sorted(int(i) for i in np.unique(faces.person_ids.numpy()[chosen.forget])),
        age_edges=edges,
        class_weights=class_weights(groups[train], spec.n_age_groups),  # as the original is trained
        spec=spec,
        scenario=scenario.settings(),
        relabel={"index": chosen.relabeled.tolist(), "group": chosen.labels.tolist()} if len(chosen.relabeled) else {},
        trigger=chosen.trigger,
    )


def relabeled(
    groups: torch.Tensor, index: Sequence[int] | np.ndarray, labels: Sequence[int] | np.ndarray
) -> torch.Tensor:
    """Every image's label as the kit trains and scores it: its age group, but where a scenario mislabelled it."""
    if not len(index):
        return groups
    out = groups.clone()
    out[torch.as_tensor(np.asarray(index), dtype=torch.int64)] = torch.as_tensor(np.asarray(labels), dtype=out.dtype)
    return out


def class_weights(groups: torch.Tensor, n_groups: int) -> list[float]:
    """1/count per group, as the competition weighted its loss; an empty group gets weight 0."""
    counts = torch.bincount(groups, minlength=n_groups).to(torch.float64)
    weights = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
    return (weights / weights.sum() * n_groups).tolist()
