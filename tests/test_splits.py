"""Splits as the competition drew them: identity-disjoint forget set, equal-width age groups."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from challenge.data.faces import FaceImages
from challenge.data.splits import (
    Split,
    SplitSpec,
    age_groups,
    class_weights,
    make_split,
)
from challenge.data.synthfaces import SynthFaces
from challenge.errors import ChallengeError


@pytest.fixture(scope="module")
def faces() -> FaceImages:
    return SynthFaces(n_identities=120, images_per_identity=6).load()


def test_parts_partition_the_images(faces: FaceImages) -> None:
    s = make_split(faces, SplitSpec(seed=3))
    everything = np.concatenate([s.train, s.val, s.test])
    assert sorted(everything.tolist()) == list(range(len(faces)))
    assert sorted(np.concatenate([s.retain, s.forget]).tolist()) == s.train.tolist()


def test_forget_set_is_whole_identities_absent_from_retain(faces: FaceImages) -> None:
    s = make_split(faces, SplitSpec(seed=1))
    pid = faces.person_ids.numpy()
    forget_ids = set(pid[s.forget].tolist())
    assert forget_ids == set(s.forget_identities)
    assert forget_ids.isdisjoint(pid[s.retain].tolist())
    # every training image of a forgotten identity is in the forget set
    assert set(np.flatnonzero(np.isin(pid, s.forget_identities)).tolist()) & set(s.train.tolist()) == set(
        s.forget.tolist()
    )


def test_forget_fraction_and_count(faces: FaceImages) -> None:
    by_fraction = make_split(faces, SplitSpec(forget_fraction=0.05))
    assert 0.05 <= len(by_fraction.forget) / len(by_fraction.train) < 0.05 + 7 / len(by_fraction.train)
    by_count = make_split(faces, SplitSpec(forget_identities=7))
    assert len(by_count.forget_identities) == 7


def test_same_seed_same_split_other_seed_other_forget_set(faces: FaceImages) -> None:
    a, b, c = (
        make_split(faces, SplitSpec(seed=5)),
        make_split(faces, SplitSpec(seed=5)),
        make_split(faces, SplitSpec(seed=6)),
    )
    assert a.forget.tolist() == b.forget.tolist() and a.test.tolist() == b.test.tolist()
    assert a.forget_identities != c.forget_identities


def test_manifest_round_trip(faces: FaceImages, tmp_path) -> None:
    s = make_split(faces, SplitSpec(seed=2, age_range=(0, 90)))
    s.save(tmp_path / "split.json")
    t = Split.load(tmp_path / "split.json")
    for part in Split.PARTS:
        assert t.indices(part).tolist() == s.indices(part).tolist()
    assert t.spec == s.spec and t.class_weights == s.class_weights


def test_age_groups_are_equal_width_with_the_oldest_in_the_last_group() -> None:
    edges = np.linspace(0, 90, 11).tolist()
    groups = age_groups(torch.tensor([0, 8, 9, 45, 89, 90]), edges)
    assert groups.tolist() == [0, 0, 1, 5, 9, 9]


def test_class_weights_are_inverse_counts() -> None:
    w = class_weights(torch.tensor([0, 0, 0, 1]), 3)
    assert w[0] == pytest.approx(w[1] / 3)
    assert w[2] == 0.0


@pytest.mark.parametrize(
    "spec, match",
    [
        (dict(test_fraction=0.0), r"^data\.split\.test_fraction=0\.0 is out of range: it must be > 0 and < 1$"),
        (dict(val_fraction=0.5, test_fraction=0.5), "leave images for training"),
        (dict(forget_fraction=1.5), "forget_fraction"),
        (dict(forget_identities=0), "forget_identities"),
        (dict(n_age_groups=1), "n_age_groups"),
    ],
)
def test_bad_split_settings_name_the_setting(spec: dict, match: str) -> None:
    with pytest.raises(ChallengeError, match=match):
        SplitSpec(**spec)


def test_too_many_forget_identities_is_refused(faces: FaceImages) -> None:
    with pytest.raises(ChallengeError, match="forget_identities=10000"):
        make_split(faces, SplitSpec(forget_identities=10000))


def test_identity_holdout_keeps_every_person_in_one_part(faces: FaceImages) -> None:
    s = make_split(faces, SplitSpec(seed=2, holdout="identities"))
    pid = faces.person_ids.numpy()
    people = [set(pid[part].tolist()) for part in (s.train, s.val, s.test)]
    assert all(a.isdisjoint(b) for i, a in enumerate(people) for b in people[i + 1 :])
    assert sorted(np.concatenate([s.train, s.val, s.test]).tolist()) == list(range(len(faces)))
    assert abs(len(s.test) - 0.2 * len(faces)) < 6  # cut at the first person boundary after 20%


def test_forget_people_out_of_holdout_take_their_val_and_test_images_along(faces: FaceImages) -> None:
    kept, moved = make_split(faces, SplitSpec(seed=4)), make_split(faces, SplitSpec(seed=4, forget_in_holdout=False))
    pid = faces.person_ids.numpy()
    assert kept.forget_identities == moved.forget_identities
    assert np.isin(
        pid[np.concatenate([kept.val, kept.test])], kept.forget_identities
    ).any()  # the 2023 split leaves some
    assert not np.isin(pid[np.concatenate([moved.val, moved.test])], moved.forget_identities).any()
    assert set(np.flatnonzero(np.isin(pid, moved.forget_identities)).tolist()) == set(moved.forget.tolist())
    assert np.array_equal(kept.retain, moved.retain)


def test_an_unknown_holdout_is_refused_naming_the_choices() -> None:
    with pytest.raises(ChallengeError, match=r"^data\.split\.holdout=people is not one of images, identities$"):
        SplitSpec(holdout="people")
