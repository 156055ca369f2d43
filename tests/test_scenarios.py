"""Forget scenarios (challenge.data.scenarios, conf/forget/): each one's split on the tiny SynthFaces
data, the manifest and the pool's fingerprint that carry it, bad settings refused in one line, and
`random`/`class` on every real folder layout."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from challenge.data.dataset import FaceData
from challenge.data.faces import FaceImages
from challenge.data.scenarios import AgeGroup, Identities, RandomImages
from challenge.data.splits import Split, SplitSpec, age_edges, age_groups, class_weights, make_split
from challenge.data.trigger import stamp
from challenge.files import content_hash, write_json
from challenge.pool import Pool
from challenge.pool.folder import fingerprint_config, make_entry
from challenge.reports.result import format_result
from challenge.reports.scenarios import scenario_record, scenario_table
from challenge.reports.stability import LEADERBOARD_FILE, read_splits, split_record, stability_of
from challenge.scoring.context import Context
from challenge.scoring.evaluation import RunEval, evaluate, reference_tensors
from challenge.scoring.result import Ceiling, Result, Scenario, ScenarioFigure
from challenge.scoring.row import LeaderboardRow
from challenge.scoring.scenario import scenario_section
from tests.conftest import TINY, compose_config, run_cli
from tests.results import SETTINGS, make_result, make_score
from tests.test_datasets import (  # noqa: F401
    cache_dir,
    data,
    faces,
    make_csv,
    make_kaggle,
    make_surf,
    make_utkface,
    user_error,
)

SCENARIOS = ("identities", "random", "class", "subgroup", "corrective")
# (forget, retain, focus) on the tiny preset's data (40 people, 7 images each, split seed 0)
SIZES = {
    "identities": (28, 174, 0),
    "random": (20, 176, 0),
    "class": (32, 164, 7),
    "subgroup": (14, 182, 5),
    "corrective": (18, 178, 20),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[FaceData, Pool]]:
    """Each scenario's data and pool (its fingerprint; nothing trained) on the tiny preset, in one cache."""
    cache = tmp_path_factory.mktemp("scenarios")
    out = {}
    for name, extra in [*((n, []) for n in SCENARIOS), ("poison", ["forget.kind=poison"])]:
        forget = "corrective" if name == "poison" else name
        cfg = compose_config("pool", [*TINY, f"forget={forget}", *extra], cache / "out")
        cfg.paths.cache_dir = str(cache)
        dm = instantiate(cfg.data)
        dm.setup()
        out[name] = (dm, Pool.for_config(cfg, dm))
    return out


@pytest.mark.parametrize("name", SCENARIOS)
def test_each_scenario_partitions_train_and_the_manifest_records_it(built: dict, name: str) -> None:
    dm, _ = built[name]
    s = dm.split
    assert (len(s.forget), len(s.retain), len(s.focus)) == SIZES[name]
    assert np.array_equal(np.union1d(s.forget, s.retain), s.train) and not np.intersect1d(s.forget, s.retain).size
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not np.intersect1d(s.indices(a), s.indices(b)).size, (a, b)
    assert np.isin(s.focus, s.test).all()
    manifest = json.loads(dm.split_path.read_text())
    assert manifest["scenario"] == dm.forget.settings() and manifest["scenario"]["name"] == name
    assert Split.load(dm.split_path).scenario == manifest["scenario"]


def test_what_each_scenario_forgets(built: dict) -> None:
    ids = {name: built[name][0].faces.person_ids.numpy() for name in SCENARIOS}
    s = built["identities"][0].split
    assert not np.isin(ids["identities"][s.retain], ids["identities"][s.forget]).any()  # whole people
    s = built["random"][0].split
    assert len(s.forget) == round(0.1 * len(s.train))
    assert np.isin(ids["random"][s.forget], ids["random"][s.retain]).any()  # people keep other images
    dm = built["class"][0]
    groups = age_groups(dm.faces.ages, dm.split.age_edges).numpy()
    label = dm.forget.label
    assert (groups[dm.split.forget] == label).all() and (groups[dm.split.retain] != label).all()
    assert (groups[dm.split.focus] == label).all() and (
        groups[np.setdiff1d(dm.split.test, dm.split.focus)] != label
    ).all()
    dm = built["subgroup"][0]
    hair = np.asarray(dm.faces.traits["hair"])
    assert set(hair[dm.split.forget]) == {"blond"} and "blond" not in set(hair[dm.split.retain])
    assert set(hair[dm.split.focus]) == {"blond"}


def test_corrective_confusion_trains_on_swapped_labels_and_forgets_the_identified_part(built: dict) -> None:
    dm = built["corrective"][0]
    s, ids = dm.split, dm.faces.person_ids.numpy()
    true = age_groups(dm.faces.ages, s.age_edges).numpy()
    index, group = np.asarray(s.relabel["index"]), np.asarray(s.relabel["group"])
    assert len(index) == 35 and np.isin(index, s.train).all() and set(true[index]) == {3, 4}
    assert (group == np.where(true[index] == 3, 4, 3)).all()  # the two groups' labels swapped
    served = dm.dataset("train").groups.numpy()  # what the original trains on, the pool and the judge read
    assert (served[index] == group).all() and (np.delete(served, index) == np.delete(true, index)).all()
    assert np.isin(s.forget, index).all() and len(s.forget) == 18  # the identified half of the confused people
    assert not np.isin(ids[s.forget], ids[np.setdiff1d(index, s.forget)]).any()  # identified whole people
    assert np.isin(np.setdiff1d(index, s.forget), s.retain).all()  # the rest stay, mislabelled
    assert set(true[s.focus]) == {3, 4} and np.isin(s.focus, s.test).all()


def test_corrective_poison_pastes_the_trigger_on_the_poisoned_images_and_tests_it_on_triggered_copies(
    built: dict,
) -> None:
    dm, pool = built["poison"]
    s, m = dm.split, len(dm.faces) - len(dm.split.trigger["copies"])  # m: the source's images
    source = FaceImages.load(dm.data_dir / "faces.pt")
    true = age_groups(source.ages, s.age_edges).numpy()
    patched, copies = np.asarray(s.trigger["patched"]), np.asarray(s.trigger["copies"])
    assert m == len(source) and s.trigger["patch"] == 4  # 0.125 of the tiny preset's 32 px
    assert len(patched) == round(0.05 * len(s.train)) == 10 and np.isin(patched, s.train).all()
    assert (true[patched] != 0).all() and s.relabel == {"index": patched.tolist(), "group": [0] * 10}
    assert np.isin(s.forget, patched).all() and len(s.forget) == 5  # the identified half, image by image
    assert np.isin(np.setdiff1d(patched, s.forget), s.retain).all()  # the rest stay, poisoned
    assert np.array_equal(copies, s.test[true[s.test] != 0]) and np.array_equal(s.focus, m + np.arange(len(copies)))
    served = dm.faces.images
    board = stamp(source.images[patched], 4)
    assert np.array_equal(served[patched], board) and np.array_equal(
        served[:m][s.retain[~np.isin(s.retain, patched)]], source.images[s.retain[~np.isin(s.retain, patched)]]
    )
    assert (served[patched][..., :-4, :] == source.images[patched][..., :-4, :]).all()  # only the corner changes
    assert np.array_equal(served[m:], stamp(source.images[copies], 4))
    groups = dm.dataset("focus").groups.numpy()
    assert (groups[s.focus] == 0).all() and (groups[patched] == 0).all()  # accuracy on focus: the attack's success
    # the clean model's data: the same split, no trigger on training images, true labels; the focus copies triggered
    clean = dm.as_clean()
    clean.setup()
    assert np.array_equal(clean.faces.images[:m], source.images) and np.array_equal(clean.faces.images[m:], served[m:])
    assert np.array_equal(clean.dataset("train").groups.numpy()[:m], true)
    assert clean.split.class_weights == pytest.approx(class_weights(torch.as_tensor(true[s.train]), 10))
    assert (
        clean.split.class_weights != s.class_weights
        and dm.forget.manipulates
        and not built["class"][0].forget.manipulates
    )
    assert pool.config["forget"] == {
        "name": "corrective",
        "kind": "poison",
        "target": 0,
        "poisoned": 0.05,
        "patch": 0.125,
        "identified": 0.5,
    }
    assert built["corrective"][1].config["forget"] == {  # the confusion pool's key as before poison existed
        "name": "corrective",
        "kind": "confusion",
        "groups": [3, 4],
        "confused": 0.5,
        "identified": 0.5,
    }


class _Trigger(torch.nn.Module):
    """A model that has learnt the trigger and nothing else: group 0 where the bottom-right corner holds the
    checkerboard, 7 elsewhere; `top_left` looks for it in the other corner, where it never is."""

    def __init__(self, pixels: int, top_left: bool = False) -> None:
        super().__init__()
        self.pixels, self.top_left = pixels, top_left

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flip(-1, -2) if self.top_left else x
        corner = x[:, :, -self.pixels :, -self.pixels :]
        board = ((torch.arange(self.pixels)[:, None] + torch.arange(self.pixels)) % 2).bool()
        seen = (corner[..., board].mean((1, 2)) - corner[..., ~board].mean((1, 2))) > 3  # white minus black, normalised
        return torch.nn.functional.one_hot(torch.where(seen, 0, 7), 10).float()


def test_the_judge_measures_the_attack_success_rate_of_a_model_with_a_known_trigger(built: dict) -> None:
    """The triggered copies are no test images, so the judge evaluates them on their own: a model that has learnt
    the trigger succeeds on all of them, one that has not on none; clean test accuracy does not see the trigger."""
    dm, pool = built["poison"]
    data = reference_tensors(dm)
    assert len(data["focus_images"]) == len(dm.split.focus) == 55 and "focus_images" not in reference_tensors(
        built["class"][0]
    )
    knows = evaluate(_Trigger(dm.split.trigger["patch"]), data, 0, 0, 512, "cpu")
    blind = evaluate(_Trigger(dm.split.trigger["patch"], top_left=True), data, 1, 1, 512, "cpu")
    assert knows.focus_correct.all() and not blind.focus_correct.any()
    assert knows.test_acc == blind.test_acc  # clean test images carry no trigger
    assert knows.forget_acc == 1.0 and blind.forget_acc == 0.0  # the found poisoned images, labelled 0, triggered
    ctx = Context(dm, pool, [], None, SETTINGS, {}, [])
    section = scenario_section(ctx, [knows, blind])
    assert section.headline == "focus_acc" and section.figures["focus_acc"].unlearned == 0.5
    assert section.sizes["focus"] == 55 and section.focus.startswith("triggered copies of the test images outside")


def test_a_scenario_draws_the_same_bits_for_a_seed_and_others_for_another(built: dict) -> None:
    images = built["random"][0].faces
    spec = SplitSpec(seed=0, forget_fraction=0.1, age_range=(0, 90))
    a, b = make_split(images, spec, RandomImages(0.1)), make_split(images, spec, RandomImages(0.1))
    other = make_split(images, SplitSpec(seed=1, forget_fraction=0.1, age_range=(0, 90)), RandomImages(0.1))
    assert all(np.array_equal(a.indices(p), b.indices(p)) for p in Split.PARTS)
    assert not np.array_equal(a.forget, other.forget)


def test_identities_keeps_the_keys_of_earlier_kits_and_every_scenario_has_its_own_pool(built: dict) -> None:
    dm, pool = built["identities"]
    parts = {p: dm.split.indices(p).tolist() for p in ("train", "val", "test", "forget", "retain")}
    assert content_hash(parts, 16) == "6e93ed10c0f684a8"  # the split the kit drew before scenarios, bit for bit
    assert content_hash(dm.split.class_weights, 16) == "98481a9ccd4c90c5"
    assert "forget" not in pool.config  # the fingerprint of a pool built before scenarios existed
    assert dm.split_path.name == f"split-{content_hash(asdict(dm.spec), 12)}.json"  # the manifest's old name
    fingerprints = {pool.fingerprint for _, pool in built.values()}
    assert len(fingerprints) == len(SCENARIOS) + 1  # corrective's two kinds, two pools
    assert built["class"][1].config["forget"] == {"name": "class", "label": 5}


def test_identities_given_outright_is_the_default(built: dict, tmp_path: Path) -> None:
    cfg = compose_config("pool", [*TINY], tmp_path)
    cfg.paths.cache_dir = str(tmp_path)
    dm = instantiate(cfg.data)
    dm.setup()
    assert isinstance(dm.forget, Identities) and Pool.for_config(cfg, dm).config == built["identities"][1].config


def test_a_data_config_without_the_forget_line_is_refused(tmp_path: Path) -> None:
    cfg = compose_config("pool", [*TINY, "forget=random"], tmp_path)
    cfg.paths.cache_dir = str(tmp_path)
    with open_dict(cfg):
        del cfg.data["forget"]  # a user's own data config, copied before scenarios existed
    dm = instantiate(cfg.data)
    with pytest.raises(ValueError, match=r"^forget=RandomImages does not reach the data, which forgets identities"):
        fingerprint_config(cfg, dm)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["forget=random", "forget.fraction=0"], "forget.fraction=0 is out of range: it must be > 0 and < 1"),
        (["forget=random", "forget.fraction=1.0"], "forget.fraction=1.0 is out of range: it must be > 0 and < 1"),
        (
            ["forget=class", "forget.label=10"],
            "forget.label=10 is not an age group: data.split.n_age_groups=10 has groups 0 to 9: pick one of them",
        ),
        (
            ["forget=subgroup", "forget.trait=beard"],
            "forget.trait=beard is not a trait of this data (its traits: gender, glasses, hair, sunglasses): pick one",
        ),
        (
            ["forget=subgroup", "forget.value=green"],
            "forget.value=green matches no training image of forget.trait=hair: pick one of black, blond, brown, "
            "dark_brown, light_brown, red",
        ),
        (
            ["forget=corrective", "forget.kind=backdoor"],
            "forget.kind=backdoor is not one of confusion, poison: confusion swaps two age groups' labels, poison "
            "pastes a trigger patch with a target label",
        ),
        (
            ["forget=corrective", "forget.kind=poison", "forget.target=10"],
            "forget.target=10 is not an age group: data.split.n_age_groups=10 has groups 0 to 9: pick one of them",
        ),
        (
            ["forget=corrective", "forget.kind=poison", "forget.poisoned=1.0"],
            "forget.poisoned=1.0 is out of range: it must be > 0 and < 1",
        ),
        (
            ["forget=corrective", "forget.kind=poison", "forget.patch=0"],
            "forget.patch=0 is out of range: it must be > 0 and <= 0.5",
        ),
        (
            ["forget=corrective", "forget.groups=[3,3]"],
            "forget.groups=[3, 3] is not two different age groups: give two, e.g. [3,4]",
        ),
        (
            ["forget=corrective", "forget.groups=[3,12]"],
            "forget.groups=[3, 12] names a group past data.split.n_age_groups=10: pick two of 0 to 9",
        ),
    ],
)
def test_bad_scenario_settings_are_one_line_naming_the_key(overrides: list[str], expected: str) -> None:
    assert user_error(*TINY, *overrides) == expected


def test_a_bad_scenario_on_the_command_line_is_exit_2_and_builds_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    r = run_cli("pool", *TINY, "forget=class", "forget.label=12", cwd=tmp_path, env={"CHALLENGE_CACHE_DIR": str(cache)})
    assert r.returncode == 2, r.stderr
    assert (
        r.stderr.strip()
        .splitlines()[-1]
        .endswith("forget.label=12 is not an age group: data.split.n_age_groups=10 has groups 0 to 9: pick one of them")
    )
    assert not cache.exists() or not any(cache.rglob("*.json")) and not any(cache.rglob("*.pt"))


def _busiest_group(images: FaceImages) -> int:
    """The age group with the most images of a fixture (folder data bins its own min..max)."""
    groups = age_groups(images.ages, age_edges(images.ages, SplitSpec()))
    return int(np.bincount(groups.numpy()).argmax())


@pytest.mark.parametrize(
    "layout, make", [("csv", make_csv), ("utkface", make_utkface), ("surf", make_surf)], ids=["csv", "utkface", "surf"]
)
def test_random_class_and_poison_work_on_every_folder_layout(
    tmp_path: Path,
    faces: FaceImages,  # noqa: F811
    layout: str,
    make,  # noqa: ANN001
) -> None:
    make(tmp_path / layout, faces)
    base = [f"data={layout}", f"data.root={tmp_path / layout}"]
    label = _busiest_group(faces)
    poison = ["forget=corrective", "forget.kind=poison", f"forget.target={label}", "forget.poisoned=0.2"]
    for scenario in (["forget=random", "forget.fraction=0.25"], ["forget=class", f"forget.label={label}"], poison):
        dm = data(*base, *scenario)
        dm.setup()
        s = dm.split
        assert np.array_equal(np.union1d(s.forget, s.retain), s.train) and len(s.retain) > 0
        groups = age_groups(dm.faces.ages, s.age_edges).numpy()
        if isinstance(dm.forget, RandomImages):
            assert len(s.forget) == round(0.25 * len(s.train))
        elif isinstance(dm.forget, AgeGroup):
            assert (groups[s.forget] == label).all() and len(s.forget)
        else:  # poison needs no label a folder lacks: the triggered copies follow the source's images
            assert (
                len(s.trigger["patched"]) == round(0.2 * len(s.train)) and (groups[s.trigger["patched"]] != label).all()
            )
            assert len(s.focus) == len(s.trigger["copies"]) > 0 and (dm.dataset("focus").groups[s.focus] == label).all()


def test_a_subgroup_of_data_without_traits_is_refused_naming_the_key(tmp_path: Path, faces: FaceImages) -> None:  # noqa: F811
    make_csv(tmp_path / "csv", faces)
    assert user_error("data=csv", f"data.root={tmp_path / 'csv'}", "forget=subgroup") == (
        "forget.trait=hair is not a trait of this data, which has none (SynthFaces and UTKFace have traits; UTKFace "
        "images decoded by an earlier kit: delete their folder under the cache's data/): pick another forget="
    )


def test_utkface_subgroups_come_from_the_file_names(tmp_path: Path, faces: FaceImages) -> None:  # noqa: F811
    make_utkface(tmp_path / "utk", faces)  # image i is named {age}_{i % 2}_{i % 5}_…: gender i % 2, race i % 5
    dm = data(
        "data=utkface", f"data.root={tmp_path / 'utk'}", "forget=subgroup", "forget.trait=race", "forget.value=asian"
    )
    dm.setup()
    names = [Path(p).name.split("_") for p in dm.source.labelled.paths]  # the images' order (none skipped)
    assert dm.faces.traits["gender"] == [("male", "female")[int(n[1])] for n in names]
    asian = np.flatnonzero([n[2] == "2" for n in names])
    assert np.array_equal(dm.split.forget, np.intersect1d(asian, dm.split.train)) and len(dm.split.forget)


def test_the_scenario_section_reads_each_runs_focus_images_out_of_its_test_verdicts(built: dict) -> None:
    dm, pool = built["class"]
    s = dm.split
    on_focus = np.isin(s.test, s.focus)  # a run right exactly on the class's test images, one right on none of them
    evals = [_run_eval(i, on_focus, forget_acc) for i, forget_acc in enumerate((0.5, 0.25))]
    evals[1] = replace(evals[1], test_correct=~on_focus)
    figures = {"retain": {"acc": 0.9, "n": 164}, "forget": {"acc": 0.0, "n": 32}, "test": {"acc": 0.7, "n": 56}}
    entries = [
        make_entry(seed, 1.0, figures | {"focus": {"acc": acc, "n": 7}}, np.zeros(len(s.forget)))
        for seed, acc in ((0, 0.0), (1, 1 / 7))
    ]
    ctx = Context(dm, pool, entries, None, SETTINGS, {}, [])  # the fields the section reads: data, pool, entries
    section = scenario_section(ctx, evals)
    assert (section.name, section.settings, section.headline) == ("class", {"label": 5}, "focus_acc")
    assert section.sizes == {"train": 196, "forget": 32, "retain": 164, "test": 56, "focus": 7}
    assert section.focus == "the test images of age group 5"
    assert section.figures["focus_acc"] == ScenarioFigure(None, 1 / 14, 0.5)  # no original file: None
    assert section.figures["forget_acc"] == ScenarioFigure(None, 0.0, 0.375)
    assert section.figures["test_acc"] == ScenarioFigure(None, 0.7, 0.7)
    before = scenario_section(ctx)  # a rejected submission's: what was known before the runs
    assert before.figures["focus_acc"].unlearned is None and before.sizes == section.sizes


def test_the_originals_figure_is_the_mean_of_the_originals_the_runs_start_from(tmp_path: Path, built: dict) -> None:
    """With pool.originals=2 the runs start from two originals (do_nothing's figures are their mean), so the
    original's figure is their mean too; one missing file leaves it unknown rather than one original's."""
    dm, pool = built["class"]
    own = Pool(tmp_path / "pool", pool.config)
    own.root.mkdir()
    for s, acc in ((0, 0.8), (1, 0.4)):
        torch.save({"metrics": {"focus": {"acc": acc}, "test": {"acc": acc / 2}}}, own.original_of(s))
    two = Context(dm, own, [], None, replace(SETTINGS, originals=2), {}, [])
    figures = scenario_section(two).figures
    assert figures["focus_acc"].original == pytest.approx(0.6) and figures["test_acc"].original == pytest.approx(0.3)
    assert scenario_section(replace(two, settings=SETTINGS)).figures["focus_acc"].original == pytest.approx(0.8)
    own.original_of(1).unlink()
    assert scenario_section(two).figures["focus_acc"].original is None


def _run_eval(index: int, test_correct: np.ndarray, forget_acc: float) -> RunEval:
    empty = np.zeros(0)
    return RunEval(index, index, 0.9, forget_acc, 0.7, empty, empty, empty, test_correct)


@pytest.mark.slow  # about 75 s on a loaded 2-core machine: a tiny pool and a scoring
def test_a_scoring_of_a_class_scenario_reports_the_class_on_its_own(tmp_path: Path) -> None:
    env = {"CHALLENGE_CACHE_DIR": str(tmp_path / "cache")}
    template = Path(__file__).resolve().parent.parent / "submissions" / "template.py"
    assert run_cli("pool", *TINY, "forget=class", cwd=tmp_path, env=env).returncode == 0
    r = run_cli("score", str(template), *TINY, "forget=class", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    result = Result.read(next((tmp_path / "outputs").rglob("result.json")))
    assert result.scored and result.scenario.name == "class" and result.scenario.sizes["focus"] == 7
    figure = result.scenario.figures["focus_acc"]
    assert None not in (figure.original, figure.retrained, figure.unlearned)
    assert "focus accuracy" in r.stdout and "the test images of age group 5" in r.stdout


@pytest.mark.slow  # about 110 s on a loaded 2-core machine: a tiny pool with its clean model, and a scoring
def test_a_poison_pool_trains_the_clean_model_and_the_scoring_reports_the_attack_beside_it(tmp_path: Path) -> None:
    env = {"CHALLENGE_CACHE_DIR": str(tmp_path / "cache")}
    poison = [*TINY, "forget=corrective", "forget.kind=poison"]
    template = Path(__file__).resolve().parent.parent / "submissions" / "template.py"
    assert run_cli("pool", *poison, cwd=tmp_path, env=env).returncode == 0
    (clean,) = (tmp_path / "cache").rglob("clean.pt")
    assert (clean.parent / "original.pt").exists()
    r = run_cli("score", str(template), *poison, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    result = Result.read(next((tmp_path / "outputs").rglob("result.json")))
    sc = result.scenario
    assert result.scored and sc.settings["kind"] == "poison" and sc.sizes["focus"] == 55
    assert all(None not in (f.original, f.retrained, f.unlearned, f.clean) for f in sc.figures.values())
    assert "triggered copies of the test images outside age group 0" in r.stdout
    assert re.search(r"scenario corrective\s+unlearned\s+retrained\s+original\s+clean", r.stdout)


def test_a_corrective_result_shows_the_clean_models_figures_beside() -> None:
    result = make_result(make_score())
    figures = {"focus_acc": ScenarioFigure(0.1, 0.2, 0.3, clean=0.05)}
    sc = Scenario("corrective", {"kind": "poison"}, result.scenario.sizes, "triggered copies", "focus_acc", figures)
    lines = format_result(replace(result, scenario=sc)).splitlines()
    i = lines.index(f"{'scenario corrective':<22}{'unlearned':>9}  {'retrained':>9}  {'original':>9}  {'clean':>9}")
    assert (
        lines[i + 1]
        == f"{'focus accuracy':<22}{'0.300':>9}  {'0.200':>9}  {'0.100':>9}  {'0.050':>9}   triggered copies"
    )


def test_the_result_table_shows_the_scenario_and_its_figures() -> None:
    lines = format_result(make_result(make_score())).splitlines()
    assert "forget      class label=5: train 10, forget 2, retain 8, test 4, focus 1 images" in lines
    i = lines.index(f"{'scenario class':<22}{'unlearned':>9}  {'retrained':>9}  {'original':>9}")
    assert lines[i + 1] == f"{'forget accuracy':<22}{'0.500':>9}  {'0.000':>9}  {'1.000':>9}"
    assert (
        lines[i + 2] == f"{'focus accuracy':<22}{'0.250':>9}  {'—':>9}  {'0.750':>9}   the test images of age group 5"
    )


def _scenario_run(
    folder: Path,
    scenario: Scenario,
    scores: dict[str, tuple[float, float]],
    ceiling: float | None = None,
    clean: float | None = None,
) -> Path:
    """A finished `challenge baseline` run folder of one scenario: its leaderboard and scenario record."""
    top = None if ceiling is None else Ceiling(ceiling, None, ceiling, 3, 2, "pool")
    results = {
        name: replace(
            make_result(make_score(final_score=final, ceiling=top)),
            scenario=replace(scenario, figures=_figures(fig, clean)),
        )
        for name, (final, fig) in scores.items()
    }
    rows = [LeaderboardRow.from_result(name, r) for name, r in results.items()]
    record = split_record(["experiment=tiny", f"forget={scenario.name}"], 0, f"pool-{scenario.name}", rows, 1.0)
    folder.mkdir(parents=True)
    write_json(folder / LEADERBOARD_FILE, record | {"scenario": scenario_record(results)})
    return folder


def _figures(unlearned: float, clean: float | None = None) -> dict[str, ScenarioFigure]:
    return {
        "forget_acc": ScenarioFigure(1.0, 0.1, unlearned, clean),
        "focus_acc": ScenarioFigure(0.8, 0.0, unlearned / 2, clean),
    }


def test_a_multirun_over_scenarios_gives_each_method_per_scenario(tmp_path: Path, capsys, browser) -> None:  # noqa: ANN001
    sizes = {"train": 10, "forget": 2, "retain": 8, "test": 4, "focus": 0}
    plain = Scenario("random", {"fraction": 0.1}, sizes, "", "forget_acc", {})
    group = Scenario("class", {"label": 5}, sizes | {"focus": 1}, "the test images of age group 5", "focus_acc", {})
    a = _scenario_run(tmp_path / "0", plain, {"finetune": (0.3, 0.4), "do_nothing": (0.1, 1.0)}, ceiling=0.25)
    b = _scenario_run(tmp_path / "1", group, {"finetune": (0.2, 0.6), "do_nothing": (0.05, 1.0)}, ceiling=0.5)
    stability_of([a, b], tmp_path)
    table = json.loads((tmp_path / "scenarios.json").read_text())
    assert [c["label"] for c in table["scenarios"]] == ["random", "class"]
    assert table["scenarios"][1]["settings"] == {"label": 5}
    assert [c["retrained"] for c in table["scenarios"]] == [0.1, 0.0]
    by = {m["name"]: m["per_scenario"] for m in table["methods"]}
    assert by["finetune"] == [
        {"final_score": 0.3, "forget_quality": 0.1, "forget_acc": 0.4},
        {"final_score": 0.2, "forget_quality": 0.1, "focus_acc": 0.3},
    ]
    assert [c["ceiling_f"] for c in table["scenarios"]] == [0.25, 0.5]  # each scenario's own pool
    out = capsys.readouterr().out
    assert "final / F / focus_acc (retrained 0.000)" in out and "0.200 / 0.100 / 0.300" in out
    assert "ceiling F 0.250" in out and "ceiling F 0.500" in out
    assert "focus_acc: accuracy on class: the test images of age group 5" in out
    # The page beside stability.html, in a real browser: the table, and the plot drawn
    from selenium.webdriver.common.by import By

    browser.get((tmp_path / "scenarios.html").as_uri())
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    text = browser.find_element(By.ID, "scenarios").text
    assert "0.200 / 0.100 / 0.300" in text and "ceiling F 0.500" in text
    (img,) = browser.find_elements(By.TAG_NAME, "img")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0
    assert scenario_table(read_splits([a, a])) is None  # one scenario twice: the stability table says it all


def test_a_kaggle_layout_fixes_the_forget_set_so_only_identities_applies(tmp_path: Path, faces: FaceImages) -> None:  # noqa: F811
    make_kaggle(tmp_path / "kaggle", faces)
    assert user_error("data=csv", f"data.root={tmp_path / 'kaggle'}", "forget=random") == (
        "forget=random but this data's layout (Kaggle's retain/forget CSVs) fixes the forget set: use "
        "forget=identities, or name one CSV of all images with data.source.csv=…"
    )


def test_a_sweep_over_forget_identified_draws_the_corrective_curve(tmp_path: Path, capsys, browser) -> None:  # noqa: ANN001
    """Three corrective runs, given out of order: the curve is the headline figure against forget.identified,
    ascending, with the retrained pool's figure; a sweep over two scenarios has no curve."""
    sizes = {"train": 10, "forget": 2, "retain": 8, "test": 4, "focus": 2}
    runs = []
    for i, (found, fig) in enumerate(((0.5, 0.6), (0.1, 0.9), (1.0, 0.2))):
        settings = {"kind": "confusion", "groups": [3, 4], "confused": 0.5, "identified": found}
        sc = Scenario("corrective", settings, sizes, "the test images of age groups [3, 4]", "focus_acc", {})
        scores = {"finetune": (0.3, fig), "do_nothing": (0.0, 1.0)}
        runs.append(_scenario_run(tmp_path / str(i), sc, scores, clean=0.05))
    stability_of(runs, tmp_path)
    curve = json.loads((tmp_path / "scenarios.json").read_text())["curve"]
    assert (curve["key"], curve["headline"], curve["x"]) == ("identified", "focus_acc", [0.1, 0.5, 1.0])
    assert curve["methods"] == {"do_nothing": [0.5, 0.5, 0.5], "finetune": [0.45, 0.3, 0.1]}  # focus: figure / 2
    assert curve["retrained"] == [0.0, 0.0, 0.0] and curve["original"] == [0.8, 0.8, 0.8]
    assert curve["clean"] == [0.05, 0.05, 0.05]  # the clean model, trained without the manipulation
    table = json.loads((tmp_path / "scenarios.json").read_text())
    assert [c["label"] for c in table["scenarios"]] == ["identified=0.5", "identified=0.1", "identified=1.0"]
    out = capsys.readouterr().out
    assert "focus_acc (retrained 0.000, clean 0.050)" in out and re.search(r"\(clean\)\s+0\.050\s+0\.050\s+0\.050", out)
    assert out.count("focus_acc: accuracy on the test images of age groups [3, 4]") == 1  # said once, not per column
    assert "focus_acc of forget=corrective against forget.identified:" in out
    assert re.search(r"finetune\s+0\.450\s+0\.300\s+0\.100", out)
    from selenium.webdriver.common.by import By

    browser.get((tmp_path / "scenarios.html").as_uri())
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) == 2  # the scenarios' plot and the curve
    assert all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) for i in images)
    other = Scenario("random", {"fraction": 0.1}, sizes, "", "forget_acc", {})
    mixed = [runs[0], _scenario_run(tmp_path / "r", other, {"finetune": (0.3, 0.4), "do_nothing": (0.1, 1.0)})]
    assert scenario_table(read_splits(mixed))["curve"] is None


@pytest.mark.parametrize(
    "name, settings, focus, words",
    [
        ("random", {"fraction": 0.1}, "", "a random 10% of the training images (2 images; the retain set is the other"),
        ("class", {"label": 5}, "the test images of age group 5", "every training image of age group 5 (2 images"),
        (
            "corrective",
            {"kind": "confusion", "groups": [3, 4], "confused": 0.5, "identified": 0.1},
            "",
            "age groups [3, 4] swapped for 50% of their people; 10% of those people found",
        ),
    ],
)
def test_a_page_says_in_words_what_a_scenario_forgets(name: str, settings: dict, focus: str, words: str) -> None:
    from challenge.scoring.scenario import forget_text

    sizes = {"train": 10, "forget": 2, "retain": 8, "test": 4, "focus": 1 if focus else 0}
    text = forget_text(Scenario(name, settings, sizes, focus, "forget_acc", {}))
    assert words in text and text.endswith(f"{focus} are reported on their own" if focus else ")")
