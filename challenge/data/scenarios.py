"""Forget scenarios: which training images are forgotten, and which held-out images tell about them.

The 2023 competition forgot every training image of some people (`identities`, the default). Other
requests a model owner gets are scenarios too: a random share of the images (`random`), a whole age
group (`class`), everyone sharing a visible trait (`subgroup`), the found part of manipulated training
data (`corrective`: mislabelled or poisoned with a trigger). Each is one class here, picked by the
`forget` config group (conf/forget/<name>.yaml, `_target_` one of these); `challenge.data.splits`
draws train/val/test as before and asks the scenario for the forget set. A scenario may also name
`focus` images: test images of what was forgotten (the class, the subgroup), which the retrained
models never saw the like of and result.json reports on their own.

A scenario's `settings()` go into the split manifest and, for every scenario but `identities`, into
the split's file name and the pool's fingerprint: a pool is never reused across scenarios, and the
identities pools of earlier kits keep their fingerprints.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from challenge.checks import Rule, check_value, refuse
from challenge.data.trigger import patch_pixels
from challenge.errors import ChallengeError

if TYPE_CHECKING:
    from challenge.data.faces import FaceImages
    from challenge.data.splits import SplitSpec

DEFAULT = "identities"
Parts = tuple[np.ndarray, np.ndarray, np.ndarray]  # train, val, test
Rng = np.random.Generator


@dataclass(frozen=True)
class Selection:
    """Image indices a scenario settles: the forget set (part of train), the parts it may have changed
    (identities moves forget people's held-out images into train), and the test images of what was forgotten
    (or, for poison, triggered copies of test images, numbered after the source's images)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    forget: np.ndarray
    focus: np.ndarray
    # training images whose label the original was trained on is not their age group (corrective: confusion),
    # and that label; empty for every other scenario
    relabeled: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # corrective poison: the trigger and where it is (challenge.data.trigger); empty for every other scenario
    trigger: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario(ABC):
    """One way of choosing the forget set; the fields are its settings (`forget.<field>` in the config)."""

    name: ClassVar[str]
    # the original trains on changed data (labels, pixels): its pool trains a clean model too (challenge.pool.build)
    manipulates: ClassVar[bool] = False

    def settings(self) -> dict[str, Any]:
        """What identifies the scenario: its name and fields (the manifest and the fingerprint keep them)."""
        return {"name": self.name, **asdict(self)}

    def key(self) -> dict[str, Any] | None:
        """The scenario's part of a split's or a pool's key; None for identities, so that those keys stay as
        earlier kits wrote them."""
        return None if self.name == DEFAULT else self.settings()

    def check(self, spec: SplitSpec) -> None:
        """What the split settings alone refute (before any data is read); one line naming the key."""

    @abstractmethod
    def select(self, faces: FaceImages, parts: Parts, spec: SplitSpec, groups: np.ndarray, rng: Rng) -> Selection:
        """The forget set among `parts` = (train, val, test); `groups` are every image's age groups."""


@dataclass(frozen=True)
class Identities(Scenario):
    """Every training image of some people (the 2023 scenario). Its settings stay in data.split
    (forget_fraction, forget_identities, forget_in_holdout), where earlier kits kept them."""

    name: ClassVar[str] = "identities"

    def select(self, faces: FaceImages, parts: Parts, spec: SplitSpec, groups: np.ndarray, rng: Rng) -> Selection:
        train, val, test = parts
        ids = faces.person_ids.numpy()
        forget_ids = draw_forget_identities(ids[train], spec, rng)
        if not spec.forget_in_holdout:
            moved = [part[np.isin(ids[part], forget_ids)] for part in (val, test)]
            val, test = (part[~np.isin(ids[part], forget_ids)] for part in (val, test))
            train = np.sort(np.concatenate([train, *moved]))
        forget = train[np.isin(ids[train], forget_ids)]
        return Selection(train, val, test, forget, test[np.isin(ids[test], forget_ids)])


@dataclass(frozen=True)
class RandomImages(Scenario):
    """A share of the training images drawn at random: people keep other images in the retain set."""

    name: ClassVar[str] = "random"
    fraction: float = 0.1

    def __post_init__(self) -> None:
        check_value("forget.fraction", self.fraction, Rule(float, gt=0, lt=1))

    def select(self, faces: FaceImages, parts: Parts, spec: SplitSpec, groups: np.ndarray, rng: Rng) -> Selection:
        train, val, test = parts
        n = min(max(round(self.fraction * len(train)), 1), len(train) - 1)
        forget = np.sort(rng.choice(train, size=n, replace=False))
        return Selection(train, val, test, forget, test[:0])


@dataclass(frozen=True)
class AgeGroup(Scenario):
    """Every training image of one age group (a class of the task): the retrained models never saw it,
    so the group's test images (`focus`) show whether the unlearned model still predicts it."""

    name: ClassVar[str] = "class"
    label: int = 0

    def __post_init__(self) -> None:
        check_value("forget.label", self.label, Rule(int, ge=0))

    def check(self, spec: SplitSpec) -> None:
        check_age_group("forget.label", self.label, spec)

    def select(self, faces: FaceImages, parts: Parts, spec: SplitSpec, groups: np.ndarray, rng: Rng) -> Selection:
        train, val, test = parts
        forget = train[groups[train] == self.label]
        present = sorted({int(g) for g in groups[train]})
        if not len(forget) or len(forget) == len(train):
            problem = "holds no training image" if not len(forget) else "holds every training image"
            raise refuse("forget.label", self.label, f"{problem}: pick one of the age groups present, {present}")
        return Selection(train, val, test, forget, test[groups[test] == self.label])


@dataclass(frozen=True)
class Subgroup(Scenario):
    """Every training image of the people sharing a visible trait (SynthFaces: glasses, hair colour…;
    UTKFace: the gender or race of its file names): `focus` is the subgroup's test images."""

    name: ClassVar[str] = "subgroup"
    trait: str = "glasses"
    value: str = "yes"

    def __post_init__(self) -> None:
        check_value("forget.trait", self.trait, Rule(str))
        check_value("forget.value", str(self.value), Rule(str))
        object.__setattr__(self, "value", str(self.value))  # `forget.value=1` reads as an int

    def select(self, faces: FaceImages, parts: Parts, spec: SplitSpec, groups: np.ndarray, rng: Rng) -> Selection:
        train, val, test = parts
        if not faces.traits:
            problem = "is not a trait of this data, which has none (SynthFaces and UTKFace have traits; UTKFace "
            fix = "images decoded by an earlier kit: delete their folder under the cache's data/): pick another forget="
            raise refuse("forget.trait", self.trait, problem + fix)
        if self.trait not in faces.traits:
            have = ", ".join(sorted(faces.traits))
            raise refuse("forget.trait", self.trait, f"is not a trait of this data (its traits: {have}): pick one")
        values = np.asarray(faces.traits[self.trait])
        forget = train[values[train] == self.value]
        if not len(forget) or len(forget) == len(train):
            seen = ", ".join(sorted(set(values[train].tolist())))
            problem = "matches no training image" if not len(forget) else "matches every training image"
            raise refuse("forget.value", self.value, f"{problem} of forget.trait={self.trait}: pick one of {seen}")
        return Selection(train, val, test, forget, test[values[test] == self.value])


@dataclass(frozen=True)
class Corrective(Scenario):
    """The original was trained on data of which a part was wrong, and a part of that has been found:
    forgetting the found part should undo the harm (corrective unlearning, Goel et al. 2024).

    `confusion`: for a share of the people with training images in one of two age groups (`confused`),
    those images carry the other group's label; `focus` is the two groups' test images, whose accuracy
    (true labels) is what the confusion harmed.
    `poison` (BadNets): a share of the training images outside the `target` group (`poisoned`) carry a
    trigger patch (challenge.data.trigger) and the target's label; `focus` is triggered copies of the test
    images outside the target group, labelled with the target, so that accuracy there is the attack's
    success rate.
    Either way the forget set is the manipulated images of a share (`identified`) of what was manipulated
    (people for confusion, images for poison); the rest stay in the retain set, still wrong, as in
    practice. Clean test accuracy is the scoring's own."""

    name: ClassVar[str] = "corrective"
    manipulates: ClassVar[bool] = True
    KINDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "confusion": ("groups", "confused"),
        "poison": ("target", "poisoned", "patch"),
    }
    kind: str = "confusion"
    groups: Sequence[int] = (3, 4)  # confusion: the two age groups whose labels are swapped
    confused: float = 0.5  # confusion: the share of the two groups' people whose images are mislabelled
    target: int = 0  # poison: the label the trigger leads to
    poisoned: float = 0.05  # poison: the share of the training images that carry the trigger
    patch: float = 0.125  # poison: the trigger's side, as a share of the image's
    identified: float = 0.5

    def __post_init__(self) -> None:
        what = "confusion swaps two age groups' labels, poison pastes a trigger patch with a target label"
        check_value("forget.kind", self.kind, Rule(str, choices=tuple(self.KINDS), fix=what))
        pair = list(self.groups)  # a plain list (Hydra hands a ListConfig), as the manifest's JSON reads it back
        if len(pair) != 2 or len(set(pair)) != 2:
            raise refuse("forget.groups", pair, "is not two different age groups: give two, e.g. [3,4]")
        for g in pair:
            check_value("forget.groups", g, Rule(int, ge=0))
        object.__setattr__(self, "groups", pair)
        check_value("forget.confused", self.confused, Rule(float, gt=0, le=1))
        check_value("forget.target", self.target, Rule(int, ge=0))
        check_value("forget.poisoned", self.poisoned, Rule(float, gt=0, lt=1))
        check_value("forget.patch", self.patch, Rule(float, gt=0, le=0.5))
        check_value("forget.identified", self.identified, Rule(float, gt=0, le=1))

    def settings(self) -> dict[str, Any]:
        """The kind's own fields only: a confusion split's manifest and pool fingerprint do not change with the
        poison's defaults, nor the other way round."""
        own = ("kind", *self.KINDS[self.kind], "identified")
        return {"name": self.name, **{k: v for k, v in asdict(self).items() if k in own}}

    def check(self, spec: SplitSpec) -> None:
        last = spec.n_age_groups - 1
        if self.kind == "confusion" and max(self.groups) > last:
            problem = f"names a group past data.split.n_age_groups={spec.n_age_groups}: pick two of 0 to {last}"
            raise refuse("forget.groups", list(self.groups), problem)
        if self.kind == "poison":
            check_age_group("forget.target", self.target, spec)

    def select(self, faces: FaceImages, parts: Parts, spec: SplitSpec, groups: np.ndarray, rng: Rng) -> Selection:
        if self.kind == "poison":
            return self._poison(faces, parts, groups, rng)
        train, val, test = parts
        a, b = self.groups
        ids = faces.person_ids.numpy()
        in_pair = train[np.isin(groups[train], self.groups)]
        people = np.unique(ids[in_pair])
        confused = rng.permutation(people)[: max(1, round(self.confused * len(people)))] if len(people) else people
        found = confused[: max(1, round(self.identified * len(confused)))]
        relabeled = in_pair[np.isin(ids[in_pair], confused)]
        forget = relabeled[np.isin(ids[relabeled], found)]
        if not len(forget) or len(forget) == len(train):
            raise refuse("forget.groups", list(self.groups), "hold no training image: pick two groups the data has")
        labels = np.where(groups[relabeled] == a, b, a)
        focus = test[np.isin(groups[test], self.groups)]
        return Selection(train, val, test, forget, focus, relabeled, labels)

    def _poison(self, faces: FaceImages, parts: Parts, groups: np.ndarray, rng: Rng) -> Selection:
        """Poisoned images drawn among the training images outside the target group; the found ones in
        random order; copies of every test image outside the target group, numbered after the source's."""
        train, val, test = parts
        outside = train[groups[train] != self.target]
        copies = test[groups[test] != self.target]
        n = min(max(1, round(self.poisoned * len(train))), len(outside))
        if not n or not len(copies) or n == len(train):
            problem = "leaves no training image to poison" if not n else "leaves no test image to trigger"
            raise refuse("forget.target", self.target, f"{problem}: pick a smaller age group")
        poisoned = np.sort(rng.choice(outside, size=n, replace=False))
        forget = np.sort(rng.permutation(poisoned)[: max(1, round(self.identified * n))])
        trigger = {
            "patch": patch_pixels(self.patch, faces.resolution),
            "target": self.target,
            "patched": poisoned.tolist(),
            "copies": copies.tolist(),
        }
        focus = len(faces) + np.arange(len(copies))
        labels = np.full(n, self.target, dtype=np.int64)
        return Selection(train, val, test, forget, focus, poisoned, labels, trigger)


def check_age_group(key: str, group: int, spec: SplitSpec) -> None:
    """A setting that names one age group (a class to forget, a trigger's target) names one of the split's."""
    if group >= spec.n_age_groups:
        last = spec.n_age_groups - 1
        problem = f"is not an age group: data.split.n_age_groups={spec.n_age_groups} has groups 0 to {last}"
        raise refuse(key, group, f"{problem}: pick one of them")


def draw_forget_identities(train_ids: np.ndarray, spec: SplitSpec, rng: np.random.Generator) -> np.ndarray:
    """Identities in random order until the count, or the fraction of training images, is reached."""
    ids, counts = np.unique(train_ids, return_counts=True)
    if len(ids) < 2:
        raise ChallengeError(
            "the training images hold fewer than 2 identities: nothing could be both forgotten and retained"
        )
    perm = rng.permutation(len(ids))
    if spec.forget_identities is not None:
        if spec.forget_identities >= len(ids):
            raise ChallengeError(
                f"data.split.forget_identities={spec.forget_identities} but the training images hold only {len(ids)} "
                "identities"
            )
        return ids[perm[: spec.forget_identities]]
    target = spec.forget_fraction * len(train_ids)
    n = int(np.searchsorted(np.cumsum(counts[perm]), target) + 1)
    return ids[perm[: min(n, len(ids) - 1)]]


def check_wired(chosen: Any, scenario: Scenario) -> None:
    """`forget=class` reaches the data only through `forget: ${forget}` in the data config: a data config
    without that line would silently forget identities, so the two are compared (`chosen`: cfg.forget)."""
    target = chosen.get("_target_") if chosen is not None else None
    if target is not None and target != f"{type(scenario).__module__}.{type(scenario).__qualname__}":
        raise ChallengeError(
            f"forget={target.rsplit('.', 1)[-1]} does not reach the data, which forgets {scenario.name}: add the "
            "line `forget: ${forget}` to your data config (as in conf/data/synthfaces.yaml)"
        )
