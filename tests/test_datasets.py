"""Real face-age folders (CASIA-SURF, UTKFace, CSV, Kaggle 2023) through the real Hydra configs.

Fixture folders hold SynthFaces images saved as JPEG/PNG, so the data is learnable and tiny.
Each layout then goes through what `challenge train`, `challenge pool` and `challenge score` run,
with a tiny model, and is scored in the real sandbox.
"""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image

import challenge.cli
from challenge.commands import pool, train
from challenge.data import folders
from challenge.data.dataset import FaceData
from challenge.data.faces import FaceImages
from challenge.data.synthfaces import SynthFaces
from challenge.scoring.metric import forget_score
from challenge.scoring.result import Result
from challenge.scoring.scorer import score_submission
from tests.conftest import compose_config

CHALLENGE = Path(sys.executable).parent / "challenge"
N_IDS, PER_ID = 12, 4


@pytest.fixture(scope="module")
def faces() -> FaceImages:
    return SynthFaces(n_identities=N_IDS, images_per_identity=PER_ID, seed=3).load()


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHALLENGE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def save(path: Path, faces: FaceImages, i: int, size: tuple[int, int] = (40, 48)) -> None:
    """Non-square on purpose: the source must make it square."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(faces.images[i].permute(1, 2, 0).numpy()).resize(size).save(path)


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def make_surf(root: Path, faces: FaceImages) -> None:
    for i, pid in enumerate(faces.person_ids.tolist()):
        person = root / "WBackground" / f"group{pid % 2}" / f"{pid:04d}" / "real.rssdk"
        save(person / "color" / f"{i:03d}.jpg", faces, i)
        save(person / "depth" / f"{i:03d}.jpg", faces, i)  # not a colour photo: must be ignored
    ages = dict(zip(faces.person_ids.tolist(), faces.ages.tolist()))
    (root / "Age_Gender.txt").write_text("".join(f"{pid:04d} {age} {'MF'[pid % 2]}\n" for pid, age in ages.items()))


def make_utkface(root: Path, faces: FaceImages) -> None:
    for i, age in enumerate(faces.ages.tolist()):
        suffix = ".jpg.chip.jpg" if i % 2 else ".jpg"
        save(root / f"{age}_{i % 2}_{i % 5}_2017010917{i:07d}{suffix}", faces, i, size=(48, 48))


def letters(pid: int) -> str:
    """a..y, then za..zy, zza..: names that sort in the order of the ids, as CSV ids often do."""
    return chr(97 + pid) if pid < 25 else "z" + letters(pid - 25)


def make_csv(root: Path, faces: FaceImages) -> None:
    rows = [
        [f"people/{letters(pid)}/{i}.jpg", age, f"person-{letters(pid)}"]
        for i, (age, pid) in enumerate(zip(faces.ages.tolist(), faces.person_ids.tolist()))
    ]
    for i, (path, _, _) in enumerate(rows):
        save(root / path, faces, i)
    write_csv(root / "labels.csv", ["path", " age", " person_id"], rows)


KAGGLE_PARTS = {"forget.csv": (0, 1), "validation.csv": (2, 3), "test.csv": (4,)}  # identities; the rest: retain.csv


def make_kaggle(
    root: Path, faces: FaceImages, with_test: bool = True, parts: dict[str, tuple[int, ...]] = KAGGLE_PARTS
) -> dict[str, list[int]]:
    """Kaggle's files: image_id "<a>-<b>" -> images/<a>/<b>.png; returns the image indices per file."""
    where = {f: ids for f, ids in parts.items() if with_test or f != "test.csv"}
    files: dict[str, list[int]] = {f: [] for f in [*where, "retain.csv"]}
    for i, pid in enumerate(faces.person_ids.tolist()):
        files[next((f for f, ids in where.items() if pid in ids), "retain.csv")].append(i)
        save(root / "images" / f"p{pid}" / f"{i}.png", faces, i, size=(32, 32))
    for name, idx in files.items():
        rows = [[f"p{faces.person_ids[i]}-{i}", int(faces.person_ids[i]), int(faces.ages[i]), 0] for i in idx]
        write_csv(root / name, ["image_id", "person_id", "age", "age_group"], rows)
    return files


def data(*overrides: str) -> FaceData:
    """As `challenge train` would build it; the cache folder is given outright because the compose
    API has no Hydra runtime to resolve the default of paths.cache_dir."""
    cache = f"data.cache_dir={os.environ['CHALLENGE_CACHE_DIR']}"
    with initialize_config_dir(config_dir=str(challenge.cli.CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, cache, "logger=none"])
    return instantiate(cfg.data)


def user_error(*overrides: str) -> str:
    """The ChallengeError message of building the data, unwrapped from Hydra's exception as the CLI does."""
    with pytest.raises(Exception) as info:
        data(*overrides).setup()
    err = challenge.cli._user_error(info.value)
    assert err is not None, f"not a ChallengeError: {info.value!r}"
    return str(err)


def test_surf_identities_from_folders(tmp_path: Path, faces: FaceImages, caplog: pytest.LogCaptureFixture) -> None:
    make_surf(tmp_path / "surf", faces)
    save(tmp_path / "surf" / "WBackground" / "group0" / "9999" / "real.rssdk" / "color" / "x.jpg", faces, 0)
    dm = data("data=surf", f"data.root={tmp_path / 'surf'}")
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert len(dm.faces) == len(faces) and dm.faces.resolution == 32
    assert sorted(dm.faces.person_ids.tolist()) == sorted(faces.person_ids.tolist())  # ids from the folder names
    age_of = dict(zip(faces.person_ids.tolist(), faces.ages.tolist()))
    assert dm.faces.ages.tolist() == [age_of[p] for p in dm.faces.person_ids.tolist()]
    first = (dm.faces.person_ids == 0).nonzero()[0, 0]  # image 0 (person 0000, file 000.jpg) sorts first
    assert (dm.faces.images[first].float() - faces.images[0].float()).abs().mean() < 8  # fit=resize undoes the stretch
    assert (
        "skipped 1 of 49 images: WBackground/group0/9999/real.rssdk/color/x.jpg (in no folder listed in Age_Gender.txt)"
        in caplog.text
    )
    retain, forget = dm.split.indices("retain"), dm.split.indices("forget")
    assert set(dm.faces.person_ids[forget].tolist()) == set(dm.split.forget_identities)
    assert not set(dm.faces.person_ids[retain].tolist()) & set(dm.split.forget_identities)


def test_utkface_pseudo_identities(tmp_path: Path, faces: FaceImages, caplog: pytest.LogCaptureFixture) -> None:
    make_utkface(tmp_path / "utk", faces)
    dm = data("data=utkface", f"data.root={tmp_path / 'utk'}", "data.split.forget_identities=3")
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert sum("UTKFace has no identity labels" in m for m in caplog.messages) == 1  # once, though setup asks often
    names = sorted(p.name for p in (tmp_path / "utk").iterdir())
    assert dm.faces.ages.tolist() == [int(n.split("_")[0]) for n in names]
    assert dm.faces.person_ids.tolist() == list(range(len(faces)))  # every image its own identity
    assert len(dm.split.indices("forget")) == 3


def test_csv_labels_and_cache(tmp_path: Path, faces: FaceImages, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "csv"
    make_csv(root, faces)
    dm = data("data=csv", f"data.root={root}")
    dm.setup()
    assert torch.equal(dm.faces.ages, faces.ages)
    assert torch.equal(dm.faces.person_ids, faces.person_ids)  # "person-a".. numbered in sorted order

    monkeypatch.setattr(
        folders, "decode_images", lambda *a: pytest.fail("decoded again although the folder is unchanged")
    )
    again = data("data=csv", f"data.root={root}")
    again.setup()
    assert again.data_dir == dm.data_dir
    os.utime(root / "people" / "a" / "0.jpg", ns=(1, 1))  # a rewritten file must invalidate the cache
    assert data("data=csv", f"data.root={root}").data_dir != dm.data_dir


@pytest.mark.parametrize("with_test", [True, False])
def test_kaggle_split_is_given(tmp_path: Path, faces: FaceImages, with_test: bool) -> None:
    files = make_kaggle(tmp_path / "kaggle", faces, with_test)
    dm = data("data=csv", f"data.root={tmp_path / 'kaggle'}", "data.split.forget_identities=5")
    dm.setup()
    order = [i for f in ("retain.csv", "forget.csv", "validation.csv", "test.csv") for i in files.get(f, [])]
    assert torch.equal(dm.faces.ages, faces.ages[order]) and torch.equal(dm.faces.person_ids, faces.person_ids[order])
    got = {p: sorted(dm.faces.person_ids[dm.split.indices(p)].tolist()) for p in ("retain", "forget", "val", "test")}
    want = {
        p: sorted(faces.person_ids[files[f]].tolist())
        for p, f in [("retain", "retain.csv"), ("forget", "forget.csv"), ("val", "validation.csv")]
    }
    want["test"] = sorted(faces.person_ids[files["test.csv"]].tolist()) if with_test else want["val"]
    assert got == want and dm.split.forget_identities == [0, 1]  # forget_identities=5 is ignored: the split is given
    assert len(dm.split.indices("train")) == len(files["retain.csv"]) + len(files["forget.csv"])


def test_kaggle_split_survives_a_skipped_image(tmp_path: Path, faces: FaceImages) -> None:
    files = make_kaggle(tmp_path / "kaggle", faces)
    gone = files["forget.csv"][0]
    (tmp_path / "kaggle" / "images" / f"p{faces.person_ids[gone]}" / f"{gone}.png").unlink()
    dm = data("data=csv", f"data.root={tmp_path / 'kaggle'}")
    dm.setup()
    sizes = {p: len(dm.split.indices(p)) for p in ("retain", "forget", "val", "test")}
    assert sizes == {
        "retain": len(files["retain.csv"]),
        "forget": len(files["forget.csv"]) - 1,
        "val": len(files["validation.csv"]),
        "test": len(files["test.csv"]),
    }
    assert set(dm.faces.person_ids[dm.split.indices("test")].tolist()) == set(KAGGLE_PARTS["test.csv"])


def test_unreadable_images_skipped_or_strict(
    tmp_path: Path, faces: FaceImages, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "csv"
    make_csv(root, faces)
    (root / "people" / "a" / "0.jpg").write_bytes(b"not a jpeg")
    jpeg = (root / "people" / "a" / "1.jpg").read_bytes()
    (root / "people" / "a" / "1.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "people" / "b" / "4.jpg").unlink()
    with caplog.at_level(logging.WARNING):
        dm = data("data=csv", f"data.root={root}")
        dm.setup()
    assert len(dm.faces) == len(faces) - 3
    [line] = [r.getMessage() for r in caplog.records if r.name == folders.__name__]
    assert (
        line.startswith("skipped 3 of 48 images: people/a/0.jpg (not an image), people/a/1.jpg (")
        and "people/b/4.jpg (missing)" in line
    )

    message = user_error("data=csv", f"data.root={root}", "data.strict=true")
    assert message.startswith("3 of 48 images are unusable: people/a/0.jpg") and "data.strict=false" in message


def bad_surf_line(root: Path, faces: FaceImages) -> None:
    make_surf(root, faces)
    text = (root / "Age_Gender.txt").read_text().splitlines()
    (root / "Age_Gender.txt").write_text("\n".join([*text[:2], "0002 twenty F", *text[3:]]))


def bad_utk_name(root: Path, faces: FaceImages) -> None:
    make_utkface(root, faces)
    save(root / "IMG_0001.jpg", faces, 0)


def csv_without_age(root: Path, faces: FaceImages) -> None:
    make_csv(root, faces)
    write_csv(root / "labels.csv", ["path", "person_id"], [["people/a/0.jpg", "a"]])


def csv_bad_age(root: Path, faces: FaceImages) -> None:
    make_csv(root, faces)
    with (root / "labels.csv").open("a") as f:
        f.write("people/a/0.jpg,thirty,a\n")


def kaggle_shared_identity(root: Path, faces: FaceImages) -> None:
    make_kaggle(root, faces)
    with (root / "forget.csv").open("a") as f:
        f.write(f"p11-47,11,{int(faces.ages[47])},0\n")


@pytest.mark.parametrize(
    "layout, make, expected",
    [
        ("surf", None, "is not a folder: set data.root"),
        (
            "surf",
            lambda root, faces: root.mkdir(),
            "no Age_Gender.txt in {root}: set data.root to the unpacked CASIA-SURF folder",
        ),
        ("utkface", lambda root, faces: root.mkdir(), "no images in {root} matching '**/*.jpg'"),
        ("csv", lambda root, faces: root.mkdir(), "no labels.csv in {root}: add a CSV of path,age,person_id"),
        ("surf", bad_surf_line, "{root}/Age_Gender.txt line 3: expected 'id age gender', got '0002 twenty F'"),
        ("utkface", bad_utk_name, "{root}/IMG_0001.jpg: not a UTKFace name"),
        ("csv", csv_without_age, "{root}/labels.csv: no age column (header: path, person_id)"),
        ("csv", csv_bad_age, "{root}/labels.csv line 50: expected a path, a whole number of years and a person_id"),
        ("csv", kaggle_shared_identity, "forget.csv and retain.csv share person_id 11"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path: Path, faces: FaceImages, layout: str, make, expected: str) -> None:
    root = tmp_path / "data"
    if make is not None:
        make(root, faces)
    message = user_error(f"data={layout}", f"data.root={root}")
    assert expected.format(root=root) in message and "\n" not in message


def test_root_expands_home(tmp_path: Path, faces: FaceImages, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    make_surf(tmp_path / "surf", faces)
    dm = data("data=surf", "data.root='~/surf'")  # quoted: Hydra's override grammar has no bare ~
    assert dm.source.root_path == tmp_path / "surf"


def test_neurips2023_experiment() -> None:
    with initialize_config_dir(config_dir=str(challenge.cli.CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=neurips2023", "data=surf", "data.root=/data/CASIA-SURF"])
    assert cfg.model.net.name == "resnet18" and cfg.data.source.resolution == 32 and cfg.trainer.max_epochs == 30
    assert (cfg.model.optimizer.lr, cfg.model.optimizer.weight_decay) == (1e-4, 5e-3)
    assert "CosineAnnealingLR" in cfg.model.scheduler._target_
    assert (cfg.data.split.n_age_groups, cfg.data.split.forget_identities) == (10, 15)
    assert (cfg.pool.size, cfg.scorer.budget_fraction) == (512, 0.2)


def test_the_slurm_command_composes() -> None:
    """The README's cluster command: the submitit plugin's SLURM launcher composes with the experiment."""
    overrides = [
        "experiment=neurips2023",
        "data=surf",
        "data.root=/data/CASIA-SURF",
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.partition=gpu",
    ]
    with initialize_config_dir(config_dir=str(challenge.cli.CONF_DIR), version_base="1.3"):
        cfg = compose("pool", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (cfg.hydra.launcher.partition, cfg.pool.size, cfg.model.net.name) == ("gpu", 512, "resnet18")


# the message is checked in-process above and the CLI's exit 2 in test_train.py: this end-to-end copy runs in `make
# test-all`
@pytest.mark.slow
def test_cli_bad_root_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = ["train", "data=surf", "data.root=/nonexistent", "logger=none", f"hydra.run.dir={tmp_path / 'bad'}"]
    run = subprocess.run([str(CHALLENGE), *bad], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert (
        run.stderr.strip().splitlines()[-1]
        == "error: data.root /nonexistent is not a folder: set data.root to where the dataset was unpacked"
    )


# Layout -> (folder builder, overrides). UTKFace has no identities: 3 images stand in for them.
# Test sets of 20 images or more: a 1-epoch model's test accuracy must not be 0, since the
# scorer divides by the retrained models' (and rightly refuses a pool where it is 0).
LAYOUTS = {
    "surf": (make_surf, ["data=surf"]),
    "utkface": (make_utkface, ["data=utkface", "data.split.forget_identities=3"]),
    "csv": (make_csv, ["data=csv", "data.split.forget_identities=2"]),
    "kaggle": (
        lambda root, faces: make_kaggle(
            root, faces, parts={"forget.csv": (0, 1), "validation.csv": (2, 3, 4, 5), "test.csv": (6, 7, 8, 9)}
        ),
        ["data=csv"],
    ),
}
TINY_RUN = ["logger=none", "trainer.max_epochs=1", "model.net.name=test_resnet"]
POOL_RUN = ["pool.size=3", "pool.threads=1", "pool.ceiling=false"]  # 3: the fewest runs the metric accepts
SCORE_RUN = [*POOL_RUN, "scorer.threads=1", "scorer.budget_seconds=120", "scorer.n_bootstrap=0"]
FINETUNE = Path(challenge.cli.__file__).resolve().parent.parent / "baselines" / "finetune.py"


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Each layout's folder through what `challenge train`, `challenge pool` and `challenge score` run.

    In this process, for speed: a command's process start costs more than its work on these
    folders, and the CLI around these functions is tested in test_train and test_score. The four
    scorings run side by side, each with its own sandboxed child.
    """
    tmp = tmp_path_factory.mktemp("layouts")
    faces = SynthFaces(n_identities=40, images_per_identity=5, seed=3).load()
    done: dict[str, dict] = {}
    for layout, (make, overrides) in LAYOUTS.items():
        root = tmp / layout / "data"
        common = [*overrides, f"data.root={root}", *TINY_RUN]
        done[layout] = {
            "made": make(root, faces),
            "train": train.run(compose_config("train", common, tmp / layout / "train")),
        }
        pool.run(compose_config("pool", [*common, *POOL_RUN], tmp / layout / "pool"))
        done[layout]["config"] = compose_config("score", [*common, *SCORE_RUN], tmp / layout / "score")

    def score(layout: str) -> Result:
        return score_submission(done[layout]["config"], FINETUNE, tmp / layout / "score")

    with ThreadPoolExecutor(max_workers=len(LAYOUTS)) as workers:
        for layout, result in zip(LAYOUTS, workers.map(score, LAYOUTS)):
            entries = Path(os.environ["CHALLENGE_CACHE_DIR"]) / "pools" / result.pool.fingerprint / "models"
            done[layout].update(score=result, pool=sorted(entries.glob("seed-*.npz")))
    return done


@pytest.mark.slow  # trains and scores a pool per layout (about 100 s); the readers themselves are tested fast above
@pytest.mark.parametrize("layout", LAYOUTS)
def test_train_pool_score_on_each_layout(pipelines: dict[str, dict], layout: str) -> None:
    done = pipelines[layout]
    trained, result = done["train"], done["score"]
    forget = trained["forget"]
    right = forget["acc"] * forget["n"]  # the accuracy is a count of right answers over the n forget images
    assert forget["n"] > 0 and right == pytest.approx(round(right), abs=1e-3)
    assert len(done["pool"]) == 3  # the three retrained reference models, as pool.size asked
    assert result.status == "scored", result.message
    score = result.score
    assert score.n_examples == trained["forget"]["n"]  # every forget image of this folder was scored
    assert [run.seed for run in result.runs] == [0, 1, 2]
    assert score.forget_quality == pytest.approx(forget_score(result.examples.epsilon, 3))
    assert score.final_score == pytest.approx(score.forget_quality * score.retain_ratio * score.test_ratio)
    if layout == "kaggle":  # the given split, file by file
        files = {"retain": "retain.csv", "forget": "forget.csv", "val": "validation.csv", "test": "test.csv"}
        assert {part: trained[part]["n"] for part in files} == {part: len(done["made"][f]) for part, f in files.items()}
