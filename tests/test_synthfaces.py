"""SynthFaces must be a reproducible, credible face-age dataset: fixed identities with one age
each, pixels that depend on age, and nothing that depends on how generation was scheduled."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from challenge.data import face_render, synthfaces
from challenge.data.synthfaces import (
    MAX_AGE,
    SHEET_LABEL,
    SHEET_PAD,
    SynthFaces,
    contact_sheet,
)

SMALL = SynthFaces(n_identities=24, images_per_identity=3)


@pytest.fixture(scope="module")
def small():
    return SMALL.load()


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(small):
    again = SMALL.load()
    for name in ("images", "ages", "person_ids"):
        assert torch.equal(getattr(small, name), getattr(again, name))
    other = SynthFaces(n_identities=4, images_per_identity=3, seed=1).load()
    assert not torch.equal(small.images[:12], other.images)


def test_bytes_do_not_depend_on_how_many_identities_or_batching(small, monkeypatch):
    monkeypatch.setattr(synthfaces, "_BATCH", 7)
    assert torch.equal(SynthFaces(n_identities=5, images_per_identity=3).load().images, small.images[:15])


def test_shapes_dtypes_and_labels(small):
    assert small.images.dtype == torch.uint8 and small.images.shape == (72, 3, 32, 32)
    assert small.ages.dtype == torch.int64 and small.person_ids.dtype == torch.int64
    assert 0 <= int(small.ages.min()) and int(small.ages.max()) <= MAX_AGE
    for pid in range(24):
        mine = small.person_ids == pid
        assert int(mine.sum()) == 3
        assert len(set(small.ages[mine].tolist())) == 1
    assert small.images.float().std() > 30  # pictures, not flat colour


def test_defaults_are_big_enough_and_ages_are_skewed_like_utkface():
    default = SynthFaces()
    assert default.n_identities >= 300 and default.images_per_identity >= 2 and default.resolution == 32
    ages = np.array([synthfaces._identity_traits(0, pid, 8, 8)["age"] for pid in range(default.n_identities)])
    prime, children, elderly = ((ages >= 20) & (ages < 40)).mean(), (ages < 10).mean(), (ages >= 70).mean()
    assert prime > 0.35 and prime > 2 * children and prime > 3 * elderly
    assert children > 0.03 and elderly > 0.01 and ages.max() <= MAX_AGE


def test_images_per_identity_range_varies_per_identity():
    faces = SynthFaces(n_identities=12, images_per_identity=(2, 5), resolution=16).load()
    counts = torch.bincount(faces.person_ids).tolist()
    assert min(counts) >= 2 and max(counts) <= 5 and len(set(counts)) > 1


@pytest.mark.parametrize("resolution", [16, 64, 128])
def test_other_resolutions(resolution):
    faces = SynthFaces(n_identities=2, images_per_identity=2, resolution=resolution).load()
    assert faces.images.shape == (4, 3, resolution, resolution)
    assert faces.images.float().std() > 30


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"n_identities": 0}, "n_identities"),
        ({"resolution": 8}, "resolution"),
        ({"images_per_identity": 0}, "images_per_identity"),
        ({"images_per_identity": (4, 2)}, "images_per_identity"),
        ({"images_per_identity": (1, 2, 3)}, "images_per_identity"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SynthFaces(**kwargs)


def test_the_same_photo_of_an_older_person_looks_different():
    """Causal check: same person, same pose/light/background, only the apparent age changes."""
    for pid in range(4):
        traits = synthfaces._identity_traits(0, pid, 1, 1)
        young, old = (
            face_render.render(face_render.stack([synthfaces._image_params(dict(traits, apparent=a), 0, 0, 32)]), 32)[0]
            for a in (6.0, 78.0)
        )
        face = (slice(None), slice(6, 26), slice(8, 24))
        assert np.abs(young[face].astype(int) - old[face].astype(int)).mean() > 8


def test_age_groups_differ_more_than_random_halves_of_one_group():
    faces = SynthFaces(n_identities=100, images_per_identity=2, resolution=16).load()
    x, ages, even = faces.images[:, :, 3:13, 4:12].float(), faces.ages, faces.person_ids % 2 == 0
    young, old, prime = ages < 12, ages >= 55, (ages >= 20) & (ages < 40)

    def gap(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((x[a].mean(0) - x[b].mean(0)).norm())

    assert gap(young, old) > 1.5 * gap(prime & even, prime & ~even)


def test_contact_sheet_writes_png_of_expected_size(small, tmp_path):
    path = contact_sheet(small, tmp_path / "sub" / "sheet.png", n_identities=5, scale=2)
    cell = 32 * 2
    assert Image.open(path).size == (
        SHEET_LABEL + 3 * (cell + SHEET_PAD) + SHEET_PAD,
        5 * (cell + SHEET_PAD) + SHEET_PAD,
    )
    everyone = contact_sheet(small, tmp_path / "all.png", n_identities=1000, max_images=2, scale=1)
    assert Image.open(everyone).size == (
        SHEET_LABEL + 2 * (32 + SHEET_PAD) + SHEET_PAD,
        24 * (32 + SHEET_PAD) + SHEET_PAD,
    )
    with pytest.raises(ValueError, match="scale"):
        contact_sheet(small, tmp_path / "x.png", scale=0)
