"""Sources for real face-age folders: CASIA-SURF, UTKFace, and any folder described by CSV files.

Each source first *labels* its folder (reads the label files and lists the images, no pixels):
that is cheap, so it runs on every start and its file list, sizes and mtimes become the cache
key, and a changed folder is decoded again. Decoding (PIL, a thread pool: Pillow releases the
GIL while it decodes and resizes) happens once; FaceData caches the result as uint8.
Images are made square at `resolution` by a centre crop (`fit: crop`, keeps proportions) or by
squashing the whole picture (`fit: resize`, what the 2023 competition did).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from challenge.data.dataset import FaceData
from challenge.data.faces import FaceImages
from challenge.errors import ChallengeError

log = logging.getLogger(__name__)

FITS = ("crop", "resize")
_SHOWN = 3  # names listed in one-line reports; the rest are counted


def folder_data(source: Callable[..., FolderSource], root: str, strict: bool = False, **data: Any) -> FaceData:
    """Hydra target of the folder data configs: `root` and `strict` sit at the top of the config so
    that commands read `data=surf data.root=...`; they belong to the (partial) source."""
    return FaceData(source(root=root, strict=strict), **data)


@dataclass(frozen=True)
class Labelled:
    """A folder as its labels describe it, before any pixel is read."""

    paths: list[str]  # relative to the root, with forward slashes
    ages: list[int]
    identities: list[str]  # as the data spells them; numbered by `identity_numbers`
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why) of images left out
    parts: list[str] | None = None  # a split the layout fixes: the part of every image
    traits: dict[str, list[str]] = field(default_factory=dict)  # per image, for forget=subgroup (UTKFace's)


@dataclass(frozen=True)
class FolderSource(ABC):
    """What every folder source shares; subclasses only say how a folder is labelled."""

    root: str
    resolution: int = 32
    fit: str = "crop"
    strict: bool = False  # stop on an unusable image instead of skipping it

    def __post_init__(self) -> None:
        if not isinstance(self.resolution, int) or self.resolution < 8:
            raise ChallengeError(f"data.source.resolution must be an integer >= 8, got {self.resolution!r}")
        if self.fit not in FITS:
            raise ChallengeError(f"data.source.fit must be one of {', '.join(FITS)}, got {self.fit!r}")
        if not self.root_path.is_dir():
            raise ChallengeError(
                f"data.root {self.root_path} is not a folder: set data.root to where the dataset was unpacked"
            )

    @property
    def root_path(self) -> Path:
        return Path(self.root).expanduser()

    @property
    def label_files(self) -> list[str]:
        """Files besides the images whose content defines the data (for the cache key)."""
        return []

    @cached_property
    def labelled(self) -> Labelled:
        """Cached: the cache key and the load both need it, and listing a large folder takes a while."""
        labelled = self.label()
        if not labelled.paths:
            raise ChallengeError(f"no images in {self.root_path}{self.empty_hint()}")
        return labelled

    @abstractmethod
    def label(self) -> Labelled:
        """Read the label files and list the images; no pixels."""

    @abstractmethod
    def empty_hint(self) -> str:
        """How to fix a folder that holds no usable image."""

    def content_key(self) -> str:
        return self._content_key

    @cached_property
    def _content_key(self) -> str:
        """Once per instance: the data module asks for its cache folder many times per run."""
        return fingerprint(self.root_path, [*self.label_files, *self.labelled.paths])

    def load(self) -> FaceImages:
        return self.decode()[0]

    def decode(self) -> tuple[FaceImages, np.ndarray]:
        """The images that could be read, and which of the labelled ones they are."""
        lab = self.labelled
        total = len(lab.paths) + len(lab.skipped)
        if self.strict and lab.skipped:
            raise ChallengeError(skip_message(lab.skipped, total, strict=True))
        pixels, kept, failed = decode_images(self.root_path, lab.paths, self.resolution, self.fit)
        skipped = lab.skipped + failed
        if not len(kept):
            raise ChallengeError(f"none of the {total} images in {self.root_path} could be read: {skip_list(skipped)}")
        if skipped and self.strict:
            raise ChallengeError(skip_message(skipped, total, strict=True))
        if skipped:
            log.warning(skip_message(skipped, total, strict=False))
        faces = FaceImages(
            images=torch.from_numpy(pixels),
            ages=torch.tensor(lab.ages, dtype=torch.int64)[kept],
            person_ids=torch.tensor(identity_numbers(lab.identities), dtype=torch.int64)[kept],
            traits={name: [values[i] for i in kept] for name, values in lab.traits.items()},
        )
        return faces, kept


@dataclass(frozen=True)
class SurfFolder(FolderSource):
    """CASIA-SURF as used in 2023: `Age_Gender.txt` ("id age gender" lines) and each person's photos
    below a folder named by their id (WBackground/<group>/<id>/real.rssdk/color/*.jpg).

    The default pattern keeps to the colour photos: the depth and IR frames beside them carry the
    same labels but are not face pictures the model should learn age from.
    """

    pattern: str = "**/color/*.jpg"

    LABELS = "Age_Gender.txt"

    @property
    def label_files(self) -> list[str]:
        return [self.LABELS]

    def label(self) -> Labelled:
        ages = read_age_gender(self.root_path / self.LABELS)
        found: list[tuple[str, str]] = []  # (path, person)
        skipped = []
        for rel in list_images(self.root_path, self.pattern):
            person = next((p for p in reversed(Path(rel).parts[:-1]) if p in ages), None)  # nearest labelled folder
            if person is None:
                skipped.append((rel, f"in no folder listed in {self.LABELS}"))
            else:
                found.append((rel, person))
        return Labelled([r for r, _ in found], [ages[p] for _, p in found], [p for _, p in found], skipped)

    def empty_hint(self) -> str:
        return (
            f" matching {self.pattern!r} below a folder listed in {self.LABELS}: set data.source.pattern to where the "
            "photos "
            "are (e.g. '*/*.jpg' for <id>/<photo>.jpg)"
        )


@dataclass(frozen=True)
class UTKFaceFolder(FolderSource):
    """UTKFace: the age is the first field of `{age}_{gender}_{race}_{datetime}.jpg[.chip.jpg]`.

    UTKFace has no identity labels, so every image is its own (pseudo-)identity and the forget set
    is random images, not people.
    """

    pattern: str = "**/*.jpg"

    NAME = re.compile(r"(\d{1,3})_")
    FIELDS = re.compile(r"\d{1,3}_(\d)_(\d)_")  # gender and race (forget=subgroup); a few files lack the race
    CODES = {"gender": ("male", "female"), "race": ("white", "black", "asian", "indian", "others")}

    def label(self) -> Labelled:
        """Runs once per run (for the cache key too), so the warning reaches every run's log."""
        log.warning(
            "UTKFace has no identity labels: each image is its own identity, so the forget set is random images, "
            "not all images of some people (identity-level forgetting is not available)"
        )
        paths = list_images(self.root_path, self.pattern)
        ages = []
        for rel in paths:
            match = self.NAME.match(Path(rel).name)
            if match is None:
                raise ChallengeError(
                    f"{self.root_path / rel}: not a UTKFace name ({{age}}_{{gender}}_{{race}}_{{datetime}}.jpg); "
                    "rename or remove it"
                )
            ages.append(int(match.group(1)))
        codes = [m.groups() if (m := self.FIELDS.match(Path(rel).name)) else ("9", "9") for rel in paths]
        traits = {
            k: [v[int(c[i])] if int(c[i]) < len(v) else "unknown" for c in codes]
            for i, (k, v) in enumerate(self.CODES.items())
        }
        return Labelled(paths, ages, identities=paths, traits=traits)

    def empty_hint(self) -> str:
        return f" matching {self.pattern!r}: set data.root to the UTKFace folder (or data.source.pattern)"


@dataclass(frozen=True)
class CsvFolder(FolderSource):
    """Images described by CSV files with a header row, paths relative to the root.

    `csv` names one file of `path, age, person_id` rows (the split is drawn as for any source).
    Left unset, the 2023 Kaggle layout is used if present: retain.csv, forget.csv and
    validation.csv (and test.csv if there is one; otherwise validation doubles as test) fix the
    split; their rows may give `image_id` ("<a>-<b>" for images/<a>/<b>.png) instead of `path`.
    Otherwise `labels.csv` is read. Person ids that are all integers are kept as they are.
    """

    csv: str | None = None

    DEFAULT = "labels.csv"
    KAGGLE = {"retain": "retain.csv", "forget": "forget.csv", "val": "validation.csv", "test": "test.csv"}
    KAGGLE_REQUIRED = ("retain", "forget", "val")

    @property
    def kaggle(self) -> bool:
        return self.csv is None and all((self.root_path / self.KAGGLE[p]).is_file() for p in self.KAGGLE_REQUIRED)

    @property
    def label_files(self) -> list[str]:
        if not self.kaggle:
            return [self.csv or self.DEFAULT]
        return [f for f in self.KAGGLE.values() if (self.root_path / f).is_file()]

    def label(self) -> Labelled:
        if not self.kaggle:
            return self._read(self.label_files[0], part=None)
        parts = {p: self._read(f, part=p) for p, f in self.KAGGLE.items() if (self.root_path / f).is_file()}
        check_forget_identities(parts["forget"], parts["retain"])
        return Labelled(
            paths=[p for lab in parts.values() for p in lab.paths],
            ages=[a for lab in parts.values() for a in lab.ages],
            identities=[i for lab in parts.values() for i in lab.identities],
            parts=[p for lab in parts.values() for p in lab.parts or []],
        )

    def _read(self, name: str, part: str | None) -> Labelled:
        path = self.root_path / name
        if not path.is_file():
            raise ChallengeError(
                f"no {name} in {self.root_path}: add a CSV of path,age,person_id (header row, paths relative to "
                "data.root), "
                "set data.source.csv to yours, or use the Kaggle layout "
                f"({', '.join(self.KAGGLE[p] for p in self.KAGGLE_REQUIRED)})"
            )
        rows = read_csv_rows(path)
        return Labelled(
            paths=[r[0] for r in rows],
            ages=[r[1] for r in rows],
            identities=[r[2] for r in rows],
            parts=[part] * len(rows) if part else None,
        )

    def load_with_parts(self) -> tuple[FaceImages, dict[str, list[int]] | None]:
        """The images and, for the Kaggle layout, the split it fixes (image indices per part)."""
        faces, kept = self.decode()
        if self.labelled.parts is None:
            return faces, None
        parts = np.asarray(self.labelled.parts)[kept]
        given = {p: np.flatnonzero(parts == p).tolist() for p in self.KAGGLE}
        if not given["test"]:
            given["test"] = given["val"]
        return faces, given

    def empty_hint(self) -> str:
        return f": no rows in {', '.join(self.label_files)}"


def read_age_gender(path: Path) -> dict[str, int]:
    """`id age gender` per line; a line that does not parse stops the run, since a silently
    dropped person would shift every later label."""
    if not path.is_file():
        raise ChallengeError(f"no {path.name} in {path.parent}: set data.root to the unpacked CASIA-SURF folder")
    ages: dict[str, int] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or not fields[1].isdigit():
            raise ChallengeError(
                f"{path} line {n}: expected 'id age gender', got {line.strip()!r}; fix or delete that line"
            )
        if ages.setdefault(fields[0], int(fields[1])) != int(fields[1]):
            raise ChallengeError(
                f"{path} line {n}: identity {fields[0]} is listed again with another age; keep one line per identity"
            )
    return ages


def read_csv_rows(path: Path) -> list[tuple[str, int, str]]:
    """(path, age, person) per row: `path`, or Kaggle's `image_id`, then `age` and `person_id`."""
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f, skipinitialspace=True)
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        missing = [c for c in ("age", "person_id") if c not in header] + (
            [] if {"path", "image_id"} & set(header) else ["path"]
        )
        if missing:
            raise ChallengeError(
                f"{path}: no {', '.join(missing)} column (header: {', '.join(header) or 'none'}); the first row must "
                "name path, age, person_id"
            )
        return [_csv_row(row, path, reader.line_num) for row in reader]


def _csv_row(row: dict[str, str], path: Path, line: int) -> tuple[str, int, str]:
    age, person = (row.get("age") or "").strip(), (row.get("person_id") or "").strip()
    image = (row.get("path") or "").strip() or kaggle_image_path((row.get("image_id") or "").strip())
    if not age.isdigit() or not person or not image:
        raise ChallengeError(
            f"{path} line {line}: expected a path, a whole number of years and a person_id, got {dict(row)}; fix or "
            "delete that row"
        )
    return image, int(age), person


def kaggle_image_path(image_id: str) -> str:
    """Kaggle's image ids are "<a>-<b>", stored at images/<a>/<b>.png."""
    a, sep, b = image_id.partition("-")
    return f"images/{a}/{b}.png" if sep and a and b else ""


def check_forget_identities(forget: Labelled, retain: Labelled) -> None:
    """Forgetting a person means all their training images: an identity may not be in both."""
    shared = sorted(set(forget.identities) & set(retain.identities))
    if shared:
        raise ChallengeError(
            "forget.csv and retain.csv share person_id "
            f"{', '.join(shared[:_SHOWN])}{' …' if len(shared) > _SHOWN else ''}: "
            "move all of a person's training rows into one of them"
        )


def list_images(root: Path, pattern: str) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.glob(pattern) if p.is_file())


def identity_numbers(names: Sequence[str]) -> list[int]:
    """Integer ids stay as they are, so that the split manifest names people as the data does;
    otherwise (or if two spellings give one number, as 7 and 007) identities are numbered in sorted order."""
    if all(n.isdigit() for n in names) and len({int(n) for n in names}) == len(set(names)):
        return [int(n) for n in names]
    index = {n: i for i, n in enumerate(sorted(set(names)))}
    return [index[n] for n in names]


def fingerprint(root: Path, relpaths: Iterable[str]) -> str:
    """Paths, sizes and mtimes: changes when a file is added, removed or rewritten, without reading it."""
    digest = hashlib.sha256()
    for rel in sorted(relpaths):
        try:
            st = (root / rel).stat()
            digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{rel}\0missing\n".encode())
    return digest.hexdigest()[:16]


def decode_images(
    root: Path, paths: Sequence[str], resolution: int, fit: str
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """uint8 [K, 3, R, R] of the images that decode, their positions in `paths`, and (path, why) of the rest."""
    out = np.empty((len(paths), 3, resolution, resolution), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    failed = []
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        results = pool.map(lambda rel: _decode_one(root / rel, resolution, fit), paths)
        for i, result in enumerate(
            tqdm(results, total=len(paths), desc="decoding images", unit="img", mininterval=1.0)
        ):
            if isinstance(result, str):
                failed.append((paths[i], result))
            else:
                out[i], ok[i] = result, True
    kept = np.flatnonzero(ok)
    return out[kept], kept, failed


def _decode_one(path: Path, resolution: int, fit: str) -> np.ndarray | str:
    """The image as uint8 [3, R, R], or why it could not be read."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (resolution, resolution))  # JPEG: decode at the smallest scale still >= R
            im = ImageOps.exif_transpose(im).convert("RGB")
            size = (resolution, resolution)
            im = (
                ImageOps.fit(im, size, Image.Resampling.BICUBIC)
                if fit == "crop"
                else im.resize(size, Image.Resampling.BICUBIC)
            )
            return np.asarray(im).transpose(2, 0, 1)
    except FileNotFoundError:
        return "missing"
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return str(e) or type(e).__name__


def _workers() -> int:
    """The CPUs this process may use (a SLURM allocation, not the whole node)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def skip_list(skipped: list[tuple[str, str]]) -> str:
    return ", ".join(f"{p} ({why})" for p, why in skipped[:_SHOWN]) + (", …" if len(skipped) > _SHOWN else "")


def skip_message(skipped: list[tuple[str, str]], total: int, strict: bool) -> str:
    names = skip_list(skipped)
    if strict:
        return (
            f"{len(skipped)} of {total} images are unusable: {names}; fix or remove them, or set data.strict=false "
            "to skip them"
        )
    return f"skipped {len(skipped)} of {total} images: {names} (data.strict=true stops on them instead)"
