"""SynthFaces: procedurally drawn faces with ages, the kit's built-in stand-in for UTKFace.

Why it exists: the kit must run end to end with no download and no licence question, yet
unlearning only means something if (a) age is learnable from pixels, but not perfectly, and
(b) a network can memorise identities, so that forgetting them is measurable. Hence every
identity has fixed, distinctive traits and one age; age acts on the picture through an
*apparent* age that differs per identity (people look older or younger than they are);
pose, light, expression, background and sensor noise change from image to image.

Determinism: an identity's traits come from a Generator seeded with (seed, 0, identity) and
an image's nuisances from (seed, 1, identity, image), so nothing depends on generation order
or batching. Pixels use only elementwise + - * / sqrt abs min max clip (IEEE-exact on every
platform: no exp/sin/pow, no BLAS, no summing reductions), so one numpy version gives
identical bytes everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from challenge.data.face_render import SPOT_BOTTOM, SPOT_TOP, SPOTS, render, stack
from challenge.data.faces import FaceImages
from challenge.errors import ChallengeError

MAX_AGE = 90
# Bump when the drawing changes: caches and pools keyed on the old pictures must not be reused.
GENERATOR_VERSION = 1
_BATCH = 32  # images drawn together to amortise numpy call overhead; bytes do not depend on it
_CLUTTER = 4  # background clutter field is _CLUTTER x _CLUTTER, bilinearly upsampled

# Years -> relative frequency, shaped like UTKFace: a baby bump, a dip in childhood, most
# people 20-40, a long thin tail of the elderly.
_AGE_KNOTS = (0, 1, 2, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90)
_AGE_WEIGHTS = (
    6,
    5,
    3.5,
    2.2,
    1.5,
    1.4,
    2.0,
    4.5,
    8.5,
    10,
    9,
    7,
    5.5,
    4.6,
    4.4,
    4.1,
    3.5,
    2.7,
    2.1,
    1.5,
    1.1,
    0.7,
    0.35,
)

_SKIN = ((0.97, 0.82, 0.71), (0.83, 0.62, 0.47), (0.58, 0.39, 0.26), (0.34, 0.22, 0.15))
_HAIR = (  # colour, weight for light skin, weight for dark skin
    ((0.07, 0.06, 0.05), 1.0, 6.0),
    ((0.20, 0.13, 0.08), 2.0, 2.0),
    ((0.40, 0.26, 0.14), 2.0, 0.4),
    ((0.62, 0.47, 0.29), 1.0, 0.1),
    ((0.86, 0.73, 0.46), 1.2, 0.05),
    ((0.60, 0.27, 0.12), 0.5, 0.02),
)
_HAIR_NAMES = ("black", "dark_brown", "brown", "light_brown", "blond", "red")  # _HAIR's colours, as traits name them
_EYES = (  # iris colour, weight for light skin, weight for dark skin
    ((0.16, 0.10, 0.06), 1.5, 6.0),
    ((0.36, 0.21, 0.10), 1.5, 2.0),
    ((0.42, 0.40, 0.22), 1.0, 0.2),
    ((0.28, 0.44, 0.30), 0.7, 0.05),
    ((0.30, 0.46, 0.66), 1.3, 0.05),
)
_GREY = (0.80, 0.80, 0.78)
# name: (volume, length below crown-line, hairline, side drop, bun, curl, density),
# weight for men, weight for women
_STYLES = {
    "crop": ((1.03, -0.3, -0.62, 0.20, 0.0, 0.0, 1.0), 3.0, 0.3),
    "short": ((1.07, -0.1, -0.55, 0.35, 0.0, 0.0, 1.0), 3.5, 0.8),
    "shaved": ((1.00, -0.5, -0.72, 0.10, 0.0, 0.0, 0.35), 1.0, 0.1),
    "fringe": ((1.09, 0.35, -0.30, 0.60, 0.0, 0.0, 1.0), 0.8, 1.2),
    "bob": ((1.13, 0.80, -0.52, 1.40, 0.0, 0.0, 1.0), 0.4, 2.0),
    "long": ((1.12, 1.90, -0.55, 1.20, 0.0, 0.0, 1.0), 0.5, 3.5),
    "bun": ((1.03, -0.2, -0.60, 0.20, 1.0, 0.0, 1.0), 0.1, 1.5),
    "afro": ((1.32, 0.40, -0.60, 0.70, 0.0, 1.0, 1.0), 0.7, 0.7),
}


@dataclass(frozen=True)
class SynthFaces:
    """Hydra-instantiable source (conf/data/synthfaces.yaml points `source._target_` here).

    `images_per_identity` is either a fixed count or a `(min, max)` pair (inclusive), in which
    case each identity draws its own count, as real datasets have uneven identities.
    """

    n_identities: int = 400
    images_per_identity: int | Sequence[int] = 8
    resolution: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.n_identities, int) or self.n_identities < 1:
            raise ChallengeError(f"data.source.n_identities must be an integer >= 1, got {self.n_identities!r}")
        if not isinstance(self.resolution, int) or self.resolution < 16:
            raise ChallengeError(f"data.source.resolution must be an integer >= 16, got {self.resolution!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ChallengeError(f"data.source.seed must be an integer >= 0, got {self.seed!r}")
        self._count_range()  # validates images_per_identity

    def _count_range(self) -> tuple[int, int]:
        ipi = self.images_per_identity
        pair = (ipi, ipi) if isinstance(ipi, int) else tuple(ipi) if isinstance(ipi, Sequence) else ()
        if len(pair) != 2 or not all(isinstance(n, int) for n in pair) or not 1 <= pair[0] <= pair[1]:
            raise ChallengeError(
                "data.source.images_per_identity must be an int >= 1 or a (min, max) pair with 1 <= min <= max, got "
                f"{ipi!r}"
            )
        return pair

    def content_key(self) -> str:
        return f"synthfaces-v{GENERATOR_VERSION}"

    def load(self) -> FaceImages:
        lo, hi = self._count_range()
        traits = [_identity_traits(self.seed, pid, lo, hi) for pid in range(self.n_identities)]
        jobs = [(t, k) for t in traits for k in range(t["count"])]
        chunks = []
        for i in range(0, len(jobs), _BATCH):  # params built per batch: sensor noise is large
            params = [_image_params(t, self.seed, k, self.resolution) for t, k in jobs[i : i + _BATCH]]
            chunks.append(render(stack(params), self.resolution))
        return FaceImages(
            images=torch.from_numpy(np.concatenate(chunks)),
            ages=torch.tensor([t["age"] for t, _ in jobs], dtype=torch.int64),
            person_ids=torch.tensor([t["pid"] for t, _ in jobs], dtype=torch.int64),
            traits=_visible(traits),
        )

    def traits(self) -> dict[str, list[str]]:
        """Each image's visible traits (forget=subgroup), drawn without rendering a pixel: a cache of the
        images written before the kit kept traits gets them from here."""
        lo, hi = self._count_range()
        return _visible([_identity_traits(self.seed, pid, lo, hi) for pid in range(self.n_identities)])


def _visible(identities: list[dict]) -> dict[str, list[str]]:
    """Per image, in load order, the traits a person keeps in every photo: `gender`, `glasses` (worn in most
    photos from about age 8), `sunglasses` and `hair` (its colour before it greys)."""
    per_person = {
        "gender": [("male" if t["male"] else "female") for t in identities],
        "glasses": [("yes" if t["glasses"] > 0 else "no") for t in identities],
        "sunglasses": [("yes" if t["sunglasses"] > 0 else "no") for t in identities],
        "hair": [t["hair_name"] for t in identities],
    }
    return {
        name: [v for t, v in zip(identities, values) for _ in range(t["count"])] for name, values in per_person.items()
    }


def contact_sheet(faces: FaceImages, path: Path, n_identities: int = 16, max_images: int = 8, scale: int = 4) -> Path:
    """Write a PNG for humans to judge a dataset at a glance: one row per identity, spread
    evenly over the age range (youngest on top), that identity's photos along the row, the
    age at the left. Nearest-neighbour upscaling keeps the real pixels visible.

    Size: width = LABEL + cols * (res*scale + PAD) + PAD, height = rows * (res*scale + PAD) + PAD,
    where cols = min(max_images, most photos of a shown identity)."""
    if n_identities < 1 or max_images < 1 or scale < 1:
        raise ChallengeError(
            f"n_identities, max_images and scale must be >= 1, got {n_identities}, {max_images}, {scale}"
        )
    rows = _sheet_rows(faces, n_identities)
    cell = faces.resolution * scale
    cols = min(max_images, max(len(idx) for _, idx in rows))
    size = (SHEET_LABEL + cols * (cell + SHEET_PAD) + SHEET_PAD, len(rows) * (cell + SHEET_PAD) + SHEET_PAD)
    sheet = Image.new("RGB", size, (40, 40, 40))
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default()
    for r, (age, idx) in enumerate(rows):
        top = SHEET_PAD + r * (cell + SHEET_PAD)
        draw.text((4, top + cell // 2 - 6), f"age {age}", fill=(235, 235, 235), font=font)
        for c, i in enumerate(idx[:cols]):
            tile = Image.fromarray(faces.images[i].permute(1, 2, 0).numpy()).resize((cell, cell), Image.NEAREST)
            sheet.paste(tile, (SHEET_LABEL + c * (cell + SHEET_PAD) + SHEET_PAD, top))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


SHEET_LABEL, SHEET_PAD = 48, 2  # contact-sheet label column and gap, pixels


def _sheet_rows(faces: FaceImages, n: int) -> list[tuple[int, list[int]]]:
    """(age, image indices) for n identities at evenly spaced ranks of the age order."""
    pids = faces.person_ids.tolist()
    first: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    for i, pid in enumerate(pids):
        first.setdefault(pid, i)
        members.setdefault(pid, []).append(i)
    order = sorted(first, key=lambda pid: (int(faces.ages[first[pid]]), pid))
    n = min(n, len(order))
    picks = sorted({round(k * (len(order) - 1) / max(n - 1, 1)) for k in range(n)})
    return [(int(faces.ages[first[order[k]]]), members[order[k]]) for k in picks]


# ---------------------------------------------------------------- sampling (python floats)


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(rng.random())


def _normal(rng: np.random.Generator) -> float:
    """Unit-variance sum of uniforms: numpy's normal sampler calls libm exp/log in its tails."""
    return (sum(rng.random(4).tolist()) - 2.0) * 1.7320508075688772


def _pick(rng: np.random.Generator, weights: Sequence[float]) -> int:
    u = float(rng.random()) * sum(weights)
    for i, w in enumerate(weights):
        u -= w
        if u < 0:
            return i
    return len(weights) - 1


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> tuple[float, float, float]:
    return tuple(x + (y - x) * t for x, y in zip(a, b))  # type: ignore[return-value]


def _clip(x: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return min(max(x, lo), hi)


def _draw_age(rng: np.random.Generator) -> int:
    weights = np.interp(np.arange(MAX_AGE + 1), _AGE_KNOTS, _AGE_WEIGHTS).tolist()
    return _pick(rng, weights)


def _identity_traits(seed: int, pid: int, lo: int, hi: int) -> dict:
    """Everything that stays fixed across one person's photos, so that photos identify them."""
    rng = np.random.default_rng([seed, 0, pid])
    age = _draw_age(rng)
    male = rng.random() < 0.5
    tone = float(rng.random())
    dark = tone * tone  # dark-skin weight for the hair/eye palettes
    skin_i = min(int(tone * 3), 2)
    skin = _mix(_SKIN[skin_i], _SKIN[skin_i + 1], tone * 3 - skin_i)
    skin = tuple(_clip(c * _uniform(rng, 0.95, 1.05)) for c in skin)
    hair_index = _pick(rng, [lt * (1 - dark) + dk * dark for _, lt, dk in _HAIR])
    hair = _HAIR[hair_index][0]
    names = list(_STYLES)
    style = _STYLES[names[_pick(rng, [_STYLES[n][1 if male else 2] * (1 + 2 * dark * (n == "afro")) for n in names])]][
        0
    ]
    beard = _pick(rng, (5, 2, 1, 1, 1.5)) if male else 0  # none, stubble, moustache, goatee, full
    return {
        "pid": pid,
        "age": age,
        "count": int(rng.integers(lo, hi + 1)),
        "apparent": age + _normal(rng) * (1.0 + 0.1 * age),
        "male": float(male),
        "skin": skin,
        "hair": tuple(_clip(c * _uniform(rng, 0.85, 1.15)) for c in hair),
        "hair_name": _HAIR_NAMES[hair_index],
        "iris": _EYES[_pick(rng, [lt * (1 - dark) + dk * dark for _, lt, dk in _EYES])][0],
        "lip_tint": _uniform(rng, 0.25, 0.6) * (1 - 0.6 * dark),
        "width": _uniform(rng, 0.68, 0.80) + 0.03 * male,
        "jaw": _uniform(rng, 0.10, 0.38) - 0.06 * male,
        "eye_sep": _uniform(rng, 0.27, 0.36),
        "eye_size": _uniform(rng, 0.85, 1.15),
        "eye_y": _uniform(rng, -0.05, 0.05),
        "brow_thick": _uniform(rng, 0.035, 0.07) + 0.015 * male,
        "brow_arch": _uniform(rng, -0.8, 0.2),
        "nose_len": _uniform(rng, 0.30, 0.45),
        "nose_w": _uniform(rng, 0.09, 0.17),
        "mouth_w": _uniform(rng, 0.20, 0.30),
        "lip": _uniform(rng, 0.03, 0.06) - 0.01 * male,
        "ear": _uniform(rng, 0.85, 1.2),
        "neck": _uniform(rng, 0.32, 0.40) + 0.06 * male,
        "shirt": (float(rng.random()), float(rng.random()), float(rng.random())),
        "style": tuple(s * _uniform(rng, 0.93, 1.07) for s in style),
        "grey_onset": _uniform(rng, 20, 45),
        "bald": male * _uniform(rng, 0, 1) * _uniform(rng, 0, 1.2),
        "wrinkly": _uniform(rng, 0.7, 1.3),
        "beard": beard,
        "beard_density": _uniform(rng, 0.6, 1.0),
        "glasses": float(rng.random() < 0.25 + 0.2 * (age > 50)) * _uniform(rng, 0.7, 1.0),
        "sunglasses": float(rng.random() < 0.15),
        "frame": (_uniform(rng, 0, 0.6),) * 2 + (_uniform(rng, 0, 0.4),),
        "earring": float(rng.random() < (0.08 if male else 0.45)),
        "earring_col": (0.9, 0.75, 0.3) if rng.random() < 0.5 else (0.85, 0.85, 0.88),
        "spots": [_spot(rng) for _ in range(SPOTS)],
        "hair_freq": _uniform(rng, 5, 11),
    }


def _spot(rng: np.random.Generator) -> tuple[float, float, float, float]:
    """(x, y, radius, is_mole): moles mark an identity for life, other spots come with age."""
    return (
        _uniform(rng, -0.5, 0.5),
        _uniform(rng, SPOT_TOP, SPOT_BOTTOM),
        _uniform(rng, 0.03, 0.07),
        float(rng.random() < 0.3),
    )


def _image_params(t: dict, seed: int, k: int, resolution: int) -> dict:
    """One photo: draw nuisances, then turn (traits, apparent age) into drawing geometry."""
    rng = np.random.default_rng([seed, 1, t["pid"], k])
    age = _clip(t["apparent"] + _normal(rng), 0.0, 100.0)
    child = _clip((17.0 - age) / 17.0)  # 1 = newborn: big round head, low eyes, small nose and mouth
    baby = _clip((3.0 - age) / 3.0)
    old = _clip((age - 20.0) / 55.0)
    adult = 1.0 - child
    youth = _clip((25.0 - age) / 25.0)  # faces stay rounder, eyes bigger until the mid-twenties
    p = _pose(rng) | _lighting(rng) | _backdrop(rng)
    width = t["width"] * adult + _uniform(rng, 0.84, 0.9) * child
    jaw = t["jaw"] * (1 - 0.5 * old) * (1 - 0.4 * youth) * adult + 0.03 * child
    eye_y = t["eye_y"] * adult + 0.24 * child
    eye_r = 0.105 * t["eye_size"] * (adult + 1.35 * child) * (1 + 0.08 * youth)
    nose_y = eye_y + t["nose_len"] * adult + 0.24 * child + 0.04 * old
    mouth_y = nose_y + 0.22 * adult + 0.16 * child + 0.02 * old
    ear_y = eye_y + 0.12
    contrast = 1.0 - 0.3 * old
    grey = _clip((age - t["grey_onset"]) / 20.0)
    recede = t["bald"] * _clip((age - 22.0) / 40.0)
    vol, length, hairline, side, bun, curl, density = t["style"]
    hair = _mix(t["hair"], _GREY, grey * 0.9)
    hair = _mix(hair, (0.95, 0.95, 0.93), _clip((age - 70.0) / 30.0) * grey)
    beard_on = _clip((age - 15.0) / 5.0) * t["beard_density"] * contrast
    beard = t["beard"]
    skin = _mix(t["skin"], (0.72, 0.68, 0.64), 0.3 * old)
    p |= {
        "skin": skin,
        "child": child,
        "old": old,
        "width": width,
        "jaw": jaw,
        "neck": t["neck"] * (adult + 0.8 * child),
        "shirt": t["shirt"],
        "ear_x": width * (1.0 - jaw * max(ear_y, 0.0) * max(ear_y, 0.0)) * 0.97,
        "ear_y": ear_y,
        "ear_r": 0.16 * t["ear"] * (1 + 0.15 * old),
        "earring": t["earring"] * adult,
        "earring_col": t["earring_col"],
        "eye_y": eye_y,
        "eye_sep": t["eye_sep"] * adult + 0.31 * child,
        "eye_r": eye_r,
        "eye_open": _uniform(rng, 0.25, 0.6) if rng.random() < 0.06 else _uniform(rng, 0.75, 1.0) * (1 - 0.25 * old),
        "iris": _mix(t["iris"], (0.5, 0.5, 0.5), 0.2 * old),
        "gaze": _uniform(rng, -0.025, 0.025),
        "brow_y": eye_y - eye_r * 0.8 - 0.1 * adult - 0.06 * child + _uniform(rng, -0.03, 0.02),
        "brow_thick": t["brow_thick"] * (1 - 0.4 * child),
        "brow_arch": t["brow_arch"],
        "brow_col": _mix(tuple(c * 0.85 for c in t["hair"]), _GREY, grey * 0.7),
        "brow_alpha": (0.85 - 0.5 * baby) * contrast,
        "nose_y": nose_y,
        "nose_w": t["nose_w"] * (adult + 0.75 * child),
        "mouth_y": mouth_y,
        "mouth_w": t["mouth_w"] * (adult + 0.75 * child),
        "smile": _uniform(rng, -0.4, 1.3),
        "mouth_open": _uniform(rng, 0.02, 0.09) if rng.random() < 0.25 else 0.0,
        "lip": t["lip"] * (1 - 0.45 * old) * (adult + 0.8 * child),
        "lip_col": _mix(skin, (0.78, 0.3, 0.32), t["lip_tint"] * (1.0 - 0.6 * old)),
        "wrinkle": _clip((age - 18.0) / 47.0) * t["wrinkly"],
        "blush": 0.35 * child,
        "hair": hair,
        "hair_vol": vol * (1 - 0.12 * child),
        "hair_len": length * adult - 0.2 * child,
        "hairline": hairline * adult - 0.5 * child - 0.8 * recede,
        "hair_side": side * (1 - recede * 0.3),
        "hair_bun": bun * adult,
        "hair_curl": curl,
        "hair_density": density * (1 - 0.75 * baby) * (1 - 0.45 * recede * old),
        "hair_freq": t["hair_freq"],
        "beard_full": beard_on * (0.2 if beard == 1 else 0.95 if beard == 4 else 0.0),
        "beard_chin": beard_on * (0.9 if beard in (3, 4) else 0.3 if beard == 1 else 0.0),
        "moustache": beard_on * (0.95 if beard in (2, 3, 4) else 0.3 if beard == 1 else 0.0),
        "beard_col": _mix(tuple(c * 0.9 for c in t["hair"]), _GREY, _clip(grey * 1.2)),
        "glasses": t["glasses"] * float(rng.random() < 0.85) * _clip((age - 4.0) / 4.0),
        "lens": 0.85 * t["sunglasses"] + 0.06,
        "frame": t["frame"],
        "noise": _uniform(rng, 0.004, 0.035),
        "blur": _uniform(rng, 0.0, 0.8) if rng.random() < 0.4 else 0.0,
        "yaw": _uniform(rng, -0.07, 0.07),
        "sensor": rng.random((2, 3, resolution, resolution)),
    }
    for i, (sx, sy, sr, mole) in enumerate(t["spots"]):
        dark = 0.5 * mole * adult + (1 - mole) * 0.3 * _clip((age - 50.0) / 30.0)
        p |= {f"spot{i}_x": sx * width, f"spot{i}_y": sy, f"spot{i}_r": sr * (1 - 0.5 * mole), f"spot{i}_a": dark}
    return p


def _pose(rng: np.random.Generator) -> dict:
    sin = _uniform(rng, -0.16, 0.16)
    return {
        "sin": sin,
        "cos": math.sqrt(1.0 - sin * sin),
        "tx": _uniform(rng, -0.07, 0.07),
        "ty": _uniform(rng, -0.05, 0.08),
        "scale": 0.62 * _uniform(rng, 0.92, 1.08),
    }


def _lighting(rng: np.random.Generator) -> dict:
    return {
        "light_x": _uniform(rng, -1, 1),
        "light_y": _uniform(rng, -1, 0.6),
        "light": _uniform(rng, 0.0, 0.5),
        "exposure": _uniform(rng, 0.72, 1.18),
        "cast": (_uniform(rng, 0.93, 1.07), 1.0, _uniform(rng, 0.92, 1.08)),
    }


def _backdrop(rng: np.random.Generator) -> dict:
    grey = _uniform(rng, 0.15, 0.85)
    base = grey + (rng.random(3) - 0.5) * _uniform(rng, 0.0, 0.6)  # mostly muted, some colourful
    return {
        "bg": tuple(np.clip(base, 0.05, 0.95).tolist()),
        "bg_grad": (_uniform(rng, -0.25, 0.25), _uniform(rng, -0.25, 0.25)),
        "bg_clutter": (rng.random((3, _CLUTTER, _CLUTTER)) - 0.5) * _uniform(rng, 0.0, 0.35),
    }
