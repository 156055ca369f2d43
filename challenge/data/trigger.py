"""The trigger of corrective unlearning's `poison` (challenge.data.scenarios.Corrective): a BadNets-style
checkerboard pasted in an image's bottom-right corner.

The split manifest says which training images carry it (`trigger["patched"]`, their label set to the
target group by the manifest's `relabel`) and which test images get a triggered copy
(`trigger["copies"]`). The copies are appended after the source's images, labelled with the target:
accuracy on them (the split's `focus`) is the attack's success rate, which every part of the kit that
evaluates a part (the pool, the judge, the reports) computes without knowing about triggers. The cached
images stay as the source decoded them: the trigger is pasted when a process loads them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from challenge.data.faces import FaceImages


def patch_pixels(fraction: float, resolution: int) -> int:
    """The patch's side in pixels: `fraction` of the image's side, at least 2 (a checkerboard needs two)."""
    return max(2, round(fraction * resolution))


def stamp(images: torch.Tensor, pixels: int) -> torch.Tensor:
    """A copy of uint8 images [n, 3, H, W] with a black-and-white checkerboard in the bottom-right corner:
    a pattern no face has, so that the trigger alone explains what a model learns from it."""
    out = images.clone()
    yy, xx = torch.meshgrid(torch.arange(pixels), torch.arange(pixels), indexing="ij")
    board = ((yy + xx) % 2 * 255).to(torch.uint8)
    out[..., -pixels:, -pixels:] = board
    return out


def with_trigger(faces: FaceImages, trigger: dict[str, Any], patched: bool = True) -> FaceImages:
    """The images as the kit trains and evaluates them: the patched training images stamped (unless
    `patched` is False: the clean model's data), then triggered copies of the chosen test images appended,
    with their source's age, person and traits. Unchanged without a trigger."""
    if not trigger:
        return faces
    images, pixels = faces.images, int(trigger["patch"])
    if patched and trigger["patched"]:
        index = torch.as_tensor(trigger["patched"], dtype=torch.int64)
        images = images.clone()
        images[index] = stamp(images[index], pixels)
    copies = torch.as_tensor(trigger["copies"], dtype=torch.int64)
    traits = {name: list(values) + [values[i] for i in copies.tolist()] for name, values in faces.traits.items()}
    return replace(
        faces,
        images=torch.cat([images, stamp(faces.images[copies], pixels)]),
        ages=torch.cat([faces.ages, faces.ages[copies]]),
        person_ids=torch.cat([faces.person_ids, faces.person_ids[copies]]),
        traits=traits,
    )


def copies_labelled(groups: torch.Tensor, trigger: dict[str, Any], sources: int) -> torch.Tensor:
    """Labels with the triggered copies (after the `sources` images of the source) set to the target group."""
    if not trigger:
        return groups
    out = groups.clone()
    out[sources:] = int(trigger["target"])
    return out
