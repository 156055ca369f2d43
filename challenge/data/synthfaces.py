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

from challenge.data.faces import FaceImages
from challenge.errors import ChallengeError

MAX_AGE = 90
# Bump when the drawing changes: caches and pools keyed on the old pictures must not be reused.
GENERATOR_VERSION = 1
_BATCH = 32  # images drawn together to amortise numpy call overhead; bytes do not depend on it
_CLUTTER = 4  # background clutter field is _CLUTTER x _CLUTTER, bilinearly upsampled
_SPOTS, _SPOT_TOP, _SPOT_BOTTOM = 4, -0.6, 0.7  # moles / age spots per identity, face rows they sit in

# Years -> relative frequency, shaped like UTKFace: a baby bump, a dip in childhood, most
# people 20-40, a long thin tail of the elderly.
_AGE_KNOTS = (0, 1, 2, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90)
_AGE_WEIGHTS = (6, 5, 3.5, 2.2, 1.5, 1.4, 2.0, 4.5, 8.5, 10, 9, 7, 5.5, 4.6, 4.4, 4.1, 3.5, 2.7, 2.1, 1.5, 1.1, 0.7, 0.35)

_SKIN = ((0.97, 0.82, 0.71), (0.83, 0.62, 0.47), (0.58, 0.39, 0.26), (0.34, 0.22, 0.15))
_HAIR = (  # colour, weight for light skin, weight for dark skin
    ((0.07, 0.06, 0.05), 1.0, 6.0),
    ((0.20, 0.13, 0.08), 2.0, 2.0),
    ((0.40, 0.26, 0.14), 2.0, 0.4),
    ((0.62, 0.47, 0.29), 1.0, 0.1),
    ((0.86, 0.73, 0.46), 1.2, 0.05),
    ((0.60, 0.27, 0.12), 0.5, 0.02),
)
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
            raise ChallengeError(f"data.source.images_per_identity must be an int >= 1 or a (min, max) pair with 1 <= min <= max, got {ipi!r}")
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
            chunks.append(_render(_stack(params), self.resolution))
        return FaceImages(
            images=torch.from_numpy(np.concatenate(chunks)),
            ages=torch.tensor([t["age"] for t, _ in jobs], dtype=torch.int64),
            person_ids=torch.tensor([t["pid"] for t, _ in jobs], dtype=torch.int64),
        )


def contact_sheet(faces: FaceImages, path: Path, n_identities: int = 16, max_images: int = 8, scale: int = 4) -> Path:
    """Write a PNG for humans to judge a dataset at a glance: one row per identity, spread
    evenly over the age range (youngest on top), that identity's photos along the row, the
    age at the left. Nearest-neighbour upscaling keeps the real pixels visible.

    Size: width = LABEL + cols * (res*scale + PAD) + PAD, height = rows * (res*scale + PAD) + PAD,
    where cols = min(max_images, most photos of a shown identity)."""
    if n_identities < 1 or max_images < 1 or scale < 1:
        raise ChallengeError(f"n_identities, max_images and scale must be >= 1, got {n_identities}, {max_images}, {scale}")
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
    hair = _HAIR[_pick(rng, [lt * (1 - dark) + dk * dark for _, lt, dk in _HAIR])][0]
    names = list(_STYLES)
    style = _STYLES[names[_pick(rng, [_STYLES[n][1 if male else 2] * (1 + 2 * dark * (n == "afro")) for n in names])]][0]
    beard = _pick(rng, (5, 2, 1, 1, 1.5)) if male else 0  # none, stubble, moustache, goatee, full
    return {
        "pid": pid,
        "age": age,
        "count": int(rng.integers(lo, hi + 1)),
        "apparent": age + _normal(rng) * (1.0 + 0.1 * age),
        "male": float(male),
        "skin": skin,
        "hair": tuple(_clip(c * _uniform(rng, 0.85, 1.15)) for c in hair),
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
        "spots": [_spot(rng) for _ in range(_SPOTS)],
        "hair_freq": _uniform(rng, 5, 11),
    }


def _spot(rng: np.random.Generator) -> tuple[float, float, float, float]:
    """(x, y, radius, is_mole): moles mark an identity for life, other spots come with age."""
    return (_uniform(rng, -0.5, 0.5), _uniform(rng, _SPOT_TOP, _SPOT_BOTTOM), _uniform(rng, 0.03, 0.07), float(rng.random() < 0.3))


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


# ---------------------------------------------------------------- drawing (float32 arrays)

Params = dict[str, np.ndarray]


def _stack(params: list[dict]) -> Params:
    """Batch per-image python values as float32 arrays broadcasting over images [3, B, H, W].

    Channel-first-then-batch keeps every per-channel plane contiguous, which lets numpy run
    each broadcast op as one long inner loop (several times faster than [B, 3, H, W])."""
    out: Params = {}
    for key in params[0]:
        a = np.asarray([p[key] for p in params], dtype=np.float32)
        if a.ndim <= 2:  # scalars -> [B,1,1]; colours and pairs -> [C,B,1,1]
            out[key] = a.T[..., None, None]
        else:  # fields [B, ..., H, W] -> [..., B, H, W]
            out[key] = np.ascontiguousarray(np.moveaxis(a, 0, -3))
    return out


def _render(p: Params, res: int) -> np.ndarray:
    """Draw back to front at 2x resolution, box-average down (anti-aliasing), add sensor noise."""
    n = 2 * res
    img = _background(p, res).repeat(2, axis=-1).repeat(2, axis=-2)
    g = (np.arange(n, dtype=np.float32) + 0.5) * (2.0 / n) - 1.0
    x, y = g[None, None, :], g[None, :, None]
    dx, dy = x - p["tx"], y - p["ty"]
    u = (p["cos"] * dx + p["sin"] * dy) / p["scale"]
    v = (p["cos"] * dy - p["sin"] * dx) / p["scale"]
    f = _Face(img, u, v, (2.0 / n) / p["scale"], p)
    f.band(1.2, 3.0).shirt()
    f.hair_back()
    f.band(0.3, 1.4).neck()
    ears = f.band(p["ear_y"] - p["ear_r"], p["ear_y"] + p["ear_r"] + 0.1)
    ears.ears()
    f.head()
    ears.earrings()
    f.band(_SPOT_TOP - 0.1, _SPOT_BOTTOM + 0.1).skin_marks()
    eyes = f.band(np.minimum(p["brow_y"] - 0.3, p["eye_y"] - 2.6 * p["eye_r"]), p["eye_y"] + 2.3 * p["eye_r"])
    mouth = f.band(p["nose_y"] - 0.25, p["mouth_y"] + 0.25)
    eyes.eye_wrinkles()
    mouth.mouth_wrinkles()
    eyes.eyes()
    f.band(p["nose_y"] - 0.3, p["nose_y"] + 0.3).nose()
    f.band(p["mouth_y"] - 0.6, 1.1).beard()
    mouth.mouth()
    f.light()
    f.hair()
    eyes.glasses()
    return _finish(_downsample(f.img * (p["exposure"] * p["cast"])), p)


def _background(p: Params, res: int) -> np.ndarray:
    """Wall colour, light gradient and blurry clutter. Drawn at output resolution and repeated
    2x: after the 2x2 box average that gives the same pixels at a quarter of the cost."""
    g = (np.arange(res, dtype=np.float32) + 0.5) * (2.0 / res) - 1.0
    ramp = p["bg_grad"][0] * g[None, None, :] + p["bg_grad"][1] * g[None, :, None]
    return p["bg"] + ramp + _upsample(p["bg_clutter"], res)


def _rgb(r: float, g: float, b: float) -> np.ndarray:
    return np.array([r, g, b], np.float32).reshape(3, 1, 1, 1)


def _tri(t: np.ndarray) -> np.ndarray:
    """Triangle wave in [0, 1]: a periodic texture without sin (libm differs across platforms)."""
    return np.abs(t - np.floor(t) - 0.5) * 2.0


def _ellipse(u: np.ndarray, v: np.ndarray, cx, cy, rx, ry) -> np.ndarray:
    """Approximate signed distance (negative inside); exact enough for 1-pixel edge ramps."""
    du, dv = (u - cx) / rx, (v - cy) / ry
    return (np.sqrt(du * du + dv * dv) - 1.0) * np.minimum(rx, ry)


def _stroke(u: np.ndarray, v: np.ndarray, cx, cy, half, thick, curv=0.0, tilt=0.0) -> np.ndarray:
    """Signed distance to a thick parabolic arc v = cy + tilt*du + curv*du^2, |du| <= half."""
    du = u - cx
    off = v - cy - (tilt + curv * du) * du
    slope = tilt + 2.0 * curv * du
    return np.maximum(np.abs(off) / np.sqrt(1.0 + slope * slope) - 0.5 * thick, np.abs(du) - half)


def _bump(u: np.ndarray, v: np.ndarray, cx, cy, r) -> np.ndarray:
    """Smooth blob, 1 at the centre and 0 beyond r (a polynomial stand-in for a Gaussian)."""
    du, dv = u - cx, v - cy
    t = np.clip(1.0 - (du * du + dv * dv) / (r * r), 0.0, 1.0)
    return t * t


class _Face:
    """One batch of faces being painted in face coordinates (crown v=-1, chin v=1, u to the
    right); methods are layers, called back to front. Facial features use `uf` (shifted by
    yaw) and mirrored |u| so that one call draws both eyes, ears, nostrils..."""

    _ROWS = ("u", "v", "uf", "ua", "ufa", "head_sd", "q2", "skin_mask")

    def __init__(self, img: np.ndarray, u: np.ndarray, v: np.ndarray, pw: np.ndarray, p: Params):
        self.img, self.u, self.v, self.pw, self.p = img, u, v, pw, p
        self.uf = u - p["yaw"]
        self.ua, self.ufa = np.abs(u), np.abs(self.uf)
        self.skin_mask = np.zeros_like(u)

    def band(self, lo: np.ndarray | float, hi: np.ndarray | float) -> _Face:
        """A view of the image rows that face rows [lo, hi] can reach in any image of the batch.

        Small features drawn through it cost a fraction of full-frame layers and give the same
        pixels, provided what they draw vanishes outside [lo, hi] (callers pass generous limits);
        otherwise bytes would depend on which images share a batch."""
        p, margin = self.p, 0.25
        reach = np.abs(p["sin"]) * 1.3  # rotation spreads a face row over more image rows (|u| <= 1.3)
        top = np.min(p["ty"] + p["scale"] * (p["cos"] * (lo - margin) - reach))
        bottom = np.max(p["ty"] + p["scale"] * (p["cos"] * (hi + margin) + reach))
        n = self.u.shape[-1]
        r0, r1 = max(int((top + 1.0) * n / 2) - 2, 0), min(int((bottom + 1.0) * n / 2) + 3, n)
        view = object.__new__(_Face)
        view.p, view.pw, view.img = p, self.pw, self.img[..., r0:r1, :]
        for name in self._ROWS:
            if hasattr(self, name):  # head_sd and q2 exist once the head is drawn
                setattr(view, name, getattr(self, name)[..., r0:r1, :])
        return view

    def fill(self, sd: np.ndarray, soft: float = 1.0) -> np.ndarray:
        """Coverage of a pixel by the inside of a shape; `soft` widens the edge for fuzzy things."""
        return np.clip(0.5 - sd / (self.pw * soft), 0.0, 1.0)

    def paint(self, alpha: np.ndarray, colour: np.ndarray) -> None:
        d = colour - self.img
        d *= alpha
        self.img += d

    def darken(self, alpha: np.ndarray, amount: float = 1.0) -> None:
        self.img *= 1.0 - amount * alpha

    def shirt(self) -> None:
        self.paint(self.fill(_ellipse(self.u, self.v, 0.0, 2.15, 1.5, 0.85)), self.p["shirt"] * 0.75 + 0.1)

    def hair_back(self) -> None:
        """Hair seen behind the head: the outline, extended down to the shoulders for long styles."""
        p, v = self.p, self.v
        vol = p["hair_vol"]
        self.hair_sd = _ellipse(self.u, v, 0.0, -0.08, p["width"] * vol * 1.1, vol * 1.06)
        self.hair_sd += p["hair_curl"] * 0.07 * (_tri(self.u * 4.0) + _tri(v * 4.0) - 1.0)
        fall = np.maximum(np.maximum(self.ua - p["width"] * vol * 1.1, -v), v - p["hair_len"])
        self.paint(self.fill(np.minimum(self.hair_sd, fall), 1.5) * p["hair_density"], self.hair_colour(0.75))

    def neck(self) -> None:
        neck = self.fill(np.maximum(np.maximum(self.ua - self.p["neck"], 0.3 - self.v), self.v - 1.4))
        self.paint(neck, self.p["skin"] * 0.8)
        np.maximum(self.skin_mask, neck * 0.6, out=self.skin_mask)

    def ears(self) -> None:
        p, v = self.p, self.v
        ears = self.fill(_ellipse(self.ua, v, p["ear_x"], p["ear_y"], p["ear_r"] * 0.55, p["ear_r"]))
        self.paint(ears, p["skin"] * 0.92)
        self.darken(self.fill(_ellipse(self.ua, v, p["ear_x"], p["ear_y"], p["ear_r"] * 0.25, p["ear_r"] * 0.6), 2.0), 0.2)
        np.maximum(self.skin_mask, ears * 0.6, out=self.skin_mask)

    def texture(self, freq: np.ndarray, phase: np.ndarray, depth: float) -> np.ndarray:
        """Locks/strands as a triangle wave with mean 1, faded out when the output pixels are
        too coarse to show it: unfiltered it would alias into moire at 32x32."""
        fade = depth * np.clip(1.0 - 5.0 * freq * self.pw, 0.0, 1.0)
        return 1.0 + fade * (_tri(self.u * freq + phase) - 0.5)

    def hair_colour(self, shade) -> np.ndarray:
        return self.p["hair"] * (shade * self.texture(self.p["hair_freq"], 0.25 * _tri(self.v * 3.0), 0.4))

    def head(self) -> None:
        p, u, v = self.p, self.u, self.v
        vp = np.maximum(v, 0.0)
        w = p["width"] * (1.0 - p["jaw"] * vp * vp)
        self.q2 = (u / w) * (u / w) + v * v
        self.head_sd = (np.sqrt(self.q2) - 1.0) * p["width"] * 0.9
        face = self.fill(self.head_sd)
        self.paint(face, p["skin"])
        np.maximum(self.skin_mask, face, out=self.skin_mask)

    def skin_marks(self) -> None:
        """Rosy cheeks for children; moles (fixed per identity) and age spots (late in life)."""
        p, u, v = self.p, self.u, self.v
        face = self.fill(self.head_sd)
        blush = _bump(self.ufa, v, p["eye_sep"] + 0.05, p["nose_y"], 0.22) * p["blush"]
        self.paint(blush * face, _rgb(0.92, 0.45, 0.45))
        for i in range(_SPOTS):
            k = f"spot{i}_"
            spot = self.fill(_ellipse(u, v, p[k + "x"], p[k + "y"], p[k + "r"], p[k + "r"] * 0.8), 1.5)
            self.darken(spot * face * p[k + "a"])

    def earrings(self) -> None:
        p = self.p
        lobe = self.fill(_ellipse(self.ua, self.v, p["ear_x"], p["ear_y"] + p["ear_r"] * 0.85, 0.035, 0.035))
        self.paint(lobe * p["earring"], p["earring_col"])

    def wrinkle(self, lines: np.ndarray) -> None:
        self.darken(lines * self.p["wrinkle"] * 0.6 * self.fill(self.head_sd))

    def eye_wrinkles(self) -> None:
        """Forehead lines, eye bags and crow's feet: darker and more numerous with age."""
        p, v, t = self.p, self.v, 0.06
        lines = np.zeros_like(v)
        for i in range(3):
            sd = _stroke(self.uf, v, 0.0, p["brow_y"] - (0.12 + 0.085 * i), p["width"] * (0.4 - 0.06 * i), t, curv=0.25)
            lines = np.maximum(lines, self.fill(sd) * (0.85 - 0.2 * i))
        ue = self.ufa - p["eye_sep"]
        bag = _stroke(ue, v, 0.0, p["eye_y"] + p["eye_r"] * 1.1, p["eye_r"] * 0.9, t, curv=-2.0)
        crow = _stroke(ue, v, p["eye_r"] * 1.45, p["eye_y"], p["eye_r"] * 0.4, t * 0.8, tilt=0.5)
        self.darken(_bump(ue, v, 0.0, p["eye_y"] + p["eye_r"] * 1.3, p["eye_r"] * 1.1) * p["old"], 0.15)  # puffy bags
        self.wrinkle(np.maximum(lines, np.maximum(self.fill(bag), self.fill(crow))))

    def mouth_wrinkles(self) -> None:
        """Nasolabial folds from the nose wings to past the mouth corners, marionette lines below."""
        p, v, ua, t = self.p, self.v, self.ufa, 0.06
        top, bottom = p["nose_y"] - 0.02, p["mouth_y"]
        u_top, u_bottom = p["nose_w"] + 0.07, p["mouth_w"] + 0.04
        half, slope = (bottom - top) * 0.5, (u_bottom - u_top) / (bottom - top)
        fold = _stroke(v, ua, top + half, (u_top + u_bottom) * 0.5, half, t, curv=0.4, tilt=slope)
        jowl = _stroke(v, ua, p["mouth_y"] + 0.08, p["mouth_w"] + 0.01, 0.04, t * 0.7, tilt=0.2)
        self.wrinkle(np.maximum(self.fill(fold), self.fill(jowl) * p["old"] * 0.4))

    def eyes(self) -> None:
        p, v = self.p, self.v
        ue = self.ufa - p["eye_sep"]
        r, ey = p["eye_r"], p["eye_y"]
        self.darken(_bump(ue, v, 0.0, ey - r * 0.3, r * 2.3) * self.fill(self.head_sd), 0.12)
        self.darken(_bump(ue, v, 0.0, ey - r * 0.3, r * 2.0) * p["old"], 0.1)
        ry = r * 0.62 * p["eye_open"]
        white = self.fill(_ellipse(ue, v, 0.0, ey, r, ry))
        self.paint(white, p["skin"] * 0.25 + 0.68)
        ui = self.uf - np.sign(self.uf) * p["eye_sep"] - p["gaze"]
        ir = r * (0.5 + 0.15 * p["child"])
        self.paint(np.minimum(white, self.fill(_ellipse(ui, v, 0.0, ey, ir, ir))), p["iris"])
        self.darken(np.minimum(white, self.fill(_ellipse(ui, v, 0.0, ey, ir * 0.45, ir * 0.45))), 0.8)
        lid = _stroke(ue, v, 0.0, ey - ry, r * 1.05, 0.035 + 0.02 * (1.0 - p["old"]), curv=ry / (2.0 * r * r))
        self.paint(self.fill(lid) * 0.85, _rgb(0.12, 0.08, 0.07))
        brow = _stroke(ue, v, r * 0.1, p["brow_y"], r * 1.45, p["brow_thick"], curv=p["brow_arch"] + 0.6)
        self.paint(self.fill(brow, 1.5) * p["brow_alpha"], p["brow_col"])

    def nose(self) -> None:
        p, v, ua = self.p, self.v, self.ufa
        nw, ny = p["nose_w"], p["nose_y"]
        away = 0.5 - 0.5 * np.sign(self.uf) * p["light_x"]  # the side turned from the light is darker
        ridge = _stroke(v, ua, ny - 0.12, nw * 0.5, 0.1, 0.05, tilt=0.3)
        self.darken(self.fill(ridge, 2.0) * (0.03 + 0.1 * away))
        self.darken(_bump(ua, v, 0.0, ny + 0.06, nw * 1.2), 0.2)
        self.img *= 1.0 + 0.08 * _bump(ua, v, 0.0, ny - 0.05, 0.08)
        nostril = self.fill(_ellipse(ua, v, nw * 0.45, ny + 0.015, 0.04, 0.022))
        self.darken(nostril * (0.55 - 0.2 * p["old"]))

    def beard(self) -> None:
        p, v, ua = self.p, self.v, self.ufa
        chin = self.head_sd - 0.05
        top = p["mouth_y"] - 0.24 - 0.4 * np.clip(ua / p["width"] - 0.35, 0.0, 1.0)
        full = self.fill(np.maximum(chin, top - v), 2.0) * p["beard_full"]
        goatee = self.fill(np.maximum(chin, _ellipse(ua, v, 0.0, p["mouth_y"] + 0.15, p["mouth_w"] * 0.9, 0.26)), 2.0) * p["beard_chin"]
        tache = self.fill(_stroke(ua, v, 0.0, p["mouth_y"] - p["lip"] - 0.04, p["mouth_w"] * 1.05, 0.065, curv=1.2), 2.0) * p["moustache"]
        self.paint(np.maximum(np.maximum(full, goatee), tache) * self.texture(p["hair_freq"] * 1.3, v * 2.0, 0.5), p["beard_col"])

    def mouth(self) -> None:
        p, v, u = self.p, self.v, self.uf
        mw, lip, gap = p["mouth_w"], p["lip"], p["mouth_open"]
        rel2 = (u / mw) * (u / mw)
        taper = np.clip(1.0 - rel2, 0.0, 1.0)
        off = v - p["mouth_y"] + p["smile"] * 0.06 * rel2  # smiling lifts the corners
        ends = np.abs(u) - mw
        lips = np.maximum(np.maximum(-off - lip * 0.8 * taper, off - (gap + lip) * taper), ends)
        self.paint(self.fill(lips), p["lip_col"])
        self.paint(self.fill(np.maximum(np.abs(off) - 0.012, ends)) * 0.7, p["lip_col"] * 0.45)
        inside = self.fill(np.maximum(np.maximum(-off, off - gap * taper), ends + 0.02))
        self.paint(inside, _rgb(0.25, 0.07, 0.07))
        teeth = self.fill(np.maximum(np.maximum(-off, off - gap * taper * 0.45), ends + 0.06))
        self.paint(teeth, _rgb(0.9, 0.87, 0.8))
        self.darken(_bump(u, v, 0.0, p["mouth_y"] + lip + 0.08, 0.1), 0.1)

    def light(self) -> None:
        """Directional light and edge fall-off on the skin, so faces read as 3D and vary per photo."""
        p = self.p
        shade = p["light"] * 0.5 * (p["light_x"] * self.u + p["light_y"] * self.v)
        shade = shade - 0.22 * np.clip(self.q2 - 0.5, 0.0, 1.0)
        self.img *= 1.0 + self.skin_mask * shade

    def hair(self) -> None:
        """Hair in front of the head: above a hairline that recedes with age, plus side hair."""
        p, u, v = self.p, self.u, self.v
        rel = self.ua / p["width"]
        line = p["hairline"] + p["hair_side"] * 2.0 * np.clip(rel - 0.5, 0.0, 1.0)
        sides = np.maximum(0.82 - rel, v - p["ear_y"] + 0.05) * 0.3
        sd = np.maximum(self.hair_sd, np.minimum(v - line, sides))
        bun = _ellipse(u, v, 0.0, -1.1 * p["hair_vol"], 0.33, 0.28) + (1.0 - p["hair_bun"])  # no bun: never inside
        shine = 1.0 + p["light"] * 0.6 * _bump(u, v, p["light_x"] * -0.3, -0.75, 0.6)
        self.paint(self.fill(np.minimum(sd, bun), 1.5) * p["hair_density"], self.hair_colour(shine))

    def glasses(self) -> None:
        p, v = self.p, self.v
        ue = self.ufa - p["eye_sep"]
        rx, ry, ey = p["eye_r"] * 1.75, p["eye_r"] * 1.35, p["eye_y"] - 0.01
        rim = _ellipse(ue, v, 0.0, ey, rx, ry)
        self.paint(self.fill(rim) * p["lens"] * p["glasses"], _rgb(0.08, 0.08, 0.1))
        bridge = _stroke(self.ufa, v, 0.0, ey - 0.03, p["eye_sep"] - rx, 0.035)
        arm = _stroke(self.ua, v, (p["eye_sep"] + rx + p["ear_x"]) * 0.5, ey - 0.04, (p["ear_x"] - p["eye_sep"] - rx) * 0.5, 0.035)
        self.paint(self.fill(np.minimum(np.minimum(np.abs(rim) - 0.02, bridge), arm)) * p["glasses"], p["frame"])


def _upsample(field: np.ndarray, n: int) -> np.ndarray:
    """Bilinear [..., m, m] -> [..., n, n] by gathers and weighted adds (no matmul: BLAS order varies)."""
    m = field.shape[-1]
    t = np.clip((np.arange(n, dtype=np.float32) + 0.5) * (m / n) - 0.5, 0.0, m - 1.0)
    i0 = np.minimum(t.astype(np.int64), m - 2)
    w = t - i0.astype(np.float32)
    rows = field[..., i0, :] * (1.0 - w)[:, None] + field[..., i0 + 1, :] * w[:, None]
    return rows[..., i0] * (1.0 - w) + rows[..., i0 + 1] * w


def _downsample(img: np.ndarray) -> np.ndarray:
    """2x2 box average with a fixed summation order (numpy reductions may reorder)."""
    return (img[..., 0::2, 0::2] + img[..., 1::2, 0::2] + img[..., 0::2, 1::2] + img[..., 1::2, 1::2]) * 0.25


def _finish(img: np.ndarray, p: Params) -> np.ndarray:
    """Optional lens blur, then triangular sensor noise, then rounding to uint8 [B, 3, H, W]."""
    pad = np.pad(img, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    blurred = (pad[..., :-2, 1:-1] + pad[..., 2:, 1:-1] + pad[..., 1:-1, :-2] + pad[..., 1:-1, 2:]) * 0.25
    img = img + p["blur"] * (blurred - img)
    img = img + (p["sensor"][0] + p["sensor"][1] - 1.0) * p["noise"] * 1.5
    pixels = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(1, 0, 2, 3))
