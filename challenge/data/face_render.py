"""Drawing SynthFaces: per-image parameters (challenge.data.synthfaces) to float32 pixels.

Numpy only, batched: a batch of faces is drawn at once, back to front at twice the resolution,
then box-averaged down, so the bytes depend only on each image's own parameters.
"""

from __future__ import annotations

import numpy as np

# Moles / age spots per identity and the face rows they sit in (shared with the parameter sampling).
SPOTS, SPOT_TOP, SPOT_BOTTOM = 4, -0.6, 0.7


Params = dict[str, np.ndarray]


def stack(params: list[dict]) -> Params:
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


def render(p: Params, res: int) -> np.ndarray:
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
    f.band(SPOT_TOP - 0.1, SPOT_BOTTOM + 0.1).skin_marks()
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
        self.darken(
            self.fill(_ellipse(self.ua, v, p["ear_x"], p["ear_y"], p["ear_r"] * 0.25, p["ear_r"] * 0.6), 2.0), 0.2
        )
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
        for i in range(SPOTS):
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
        goatee = (
            self.fill(np.maximum(chin, _ellipse(ua, v, 0.0, p["mouth_y"] + 0.15, p["mouth_w"] * 0.9, 0.26)), 2.0)
            * p["beard_chin"]
        )
        tache = (
            self.fill(_stroke(ua, v, 0.0, p["mouth_y"] - p["lip"] - 0.04, p["mouth_w"] * 1.05, 0.065, curv=1.2), 2.0)
            * p["moustache"]
        )
        self.paint(
            np.maximum(np.maximum(full, goatee), tache) * self.texture(p["hair_freq"] * 1.3, v * 2.0, 0.5),
            p["beard_col"],
        )

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
        arm = _stroke(
            self.ua, v, (p["eye_sep"] + rx + p["ear_x"]) * 0.5, ey - 0.04, (p["ear_x"] - p["eye_sep"] - rx) * 0.5, 0.035
        )
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
