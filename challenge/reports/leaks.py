"""What leaked, as pictures: the forget images a method forgot worst, with small thumbnails.

A user reading a report wants to see whose faces still leak, and the report only has result.json,
so the pictures travel in the result: N_LEAKS images of highest ε, each a small PNG in base64
(about 2.7 kB for a 32 px face). Forget images are given to every participant, so they may be shown.
"""

from __future__ import annotations

import base64
import io

import torch
from PIL import Image

from challenge.scoring.result import Examples, Leak

N_LEAKS = 8  # thumbnails per method: one row of a report
THUMB_PX = 64  # the most pixels a side a thumbnail keeps; also the size a report shows it at


def leaks(images: torch.Tensor, examples: Examples, n: int = N_LEAKS) -> list[Leak]:
    """The n forget examples of highest ε (ties: image order), with their mean logit-scaled
    confidences over the unlearned and the retrained models and a thumbnail.

    `images` are the source's uint8 [M, 3, H, W] pixels (FaceData.faces.images), indexed by
    image_id: the same pictures as the normalised tensors the models saw, without the rounding
    that undoing the normalisation would add.
    """
    eps, ids = examples.epsilon, examples.image_id
    order = sorted(range(len(eps)), key=lambda k: (-eps[k], ids[k]))[:n]
    return [
        Leak(
            ids[k],
            examples.person_id[k],
            eps[k],
            examples.unlearned_confidence[k],
            examples.retrained_confidence[k],
            thumbnail(images[ids[k]]),
        )
        for k in order
    ]


def thumbnail(image: torch.Tensor, most: int = THUMB_PX) -> str:
    """A uint8 [3, H, W] image as a PNG in base64, at its own size up to `most` pixels a side (box
    filter down). Never upscaled here: the copies nearest-neighbour upscaling makes of each pixel
    carry nothing, yet cost 40% more bytes in every result.json; the report enlarges it instead."""
    picture = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    if max(picture.size) > most:
        picture = picture.resize((most, most * picture.height // picture.width), Image.BOX)
    buf = io.BytesIO()
    picture.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")
