"""Packed training (pool.pack): one network of M models that trains each as `fit` trains it alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from challenge.data.dataset import FaceData
from challenge.errors import ChallengeError
from challenge.pool import Pool
from challenge.pool.build import build
from challenge.pool.folder import NOT_OUTPUT, read_entry
from challenge.training.net import predict_logits
from challenge.training.pack import pack_nets
from challenge.training.packed import check_packable, fit_pack, predict_pack
from challenge.training.recipe import fit, quiet_lightning, set_threads
from tests.conftest import TINY, compose_config

PACK_TINY = [*TINY, "data.source.images_per_identity=5", "pool.workers=1"]


@pytest.fixture(scope="module")
def trained_pack(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """The tiny preset's data, and a pack of two models (seeds 1000 and 1001) trained on its retain set."""
    set_threads(1)
    quiet_lightning()
    out = tmp_path_factory.mktemp("pack")
    cfg = compose_config("pool", [*PACK_TINY, "pool.pack=2"], out)
    dm: FaceData = instantiate(cfg.data)
    dm.setup()
    return cfg, dm, fit_pack(cfg, dm, "retain", [1000, 1001], "cpu")


def test_the_packed_loop_of_one_model_is_fits_recipe_bit_for_bit(trained_pack: tuple) -> None:
    """At M = 1 the packed network runs the same kernels as the net alone, so any difference in the
    initialisation, the data order, the loss weights, the optimiser or the schedule would show in the bits."""
    cfg, dm, _ = trained_pack
    cfg = cfg.copy()
    cfg.trainer.max_epochs = 2  # two epochs: the second epoch's order and the schedule's step too
    alone = fit(cfg, dm, "retain", 1001, validate=False)[0].net.state_dict()
    packed = fit_pack(cfg, dm, "retain", [1001], "cpu").net_of(0).state_dict()
    assert alone.keys() == packed.keys()
    assert all(torch.equal(alone[k], packed[k]) for k in alone)


def test_a_packs_models_are_its_seeds_models_evaluated_at_once(trained_pack: tuple) -> None:
    """Each model unpacked is its seed's (close to the one trained alone), and the batched evaluation gives
    the logits the unpacked net gives on the forget set (to the last bits of other kernels)."""
    cfg, dm, fitted = trained_pack
    logits, targets = predict_pack(fitted, dm, "forget", "cpu")
    assert logits.shape == (2, len(dm.dataset("forget")), dm.num_classes)
    for index, seed in enumerate((1000, 1001)):
        net = fitted.net_of(index)
        own, own_targets = predict_logits(net, dm.batches("forget"))
        assert torch.equal(own_targets, targets)
        torch.testing.assert_close(logits[index], own, rtol=1e-4, atol=1e-4)
        alone = fit(cfg, dm, "retain", seed, validate=False)[0].net
        alone_logits = predict_logits(alone, dm.batches("forget"))[0]
        torch.testing.assert_close(own, alone_logits, rtol=0.05, atol=0.05)  # Adam's first steps amplify rounding
    assert not torch.allclose(logits[0], logits[1], atol=0.05)  # two seeds, two models


def test_a_partly_committed_pack_is_trained_again_and_gives_the_same_bits(tmp_path: Path) -> None:
    """A kill between a pack's commits leaves some of its seeds: the next build trains the pack again and
    commits the missing ones, with the bits the first build gave them; the committed file is not touched.
    A pack is trained whole, past the pool's size: seed 1001 of a pool of 1 is committed too."""
    cfg = compose_config("pool", [*PACK_TINY, "pool.pack=2", "pool.size=1"], tmp_path / "out")
    cfg.paths.cache_dir = str(tmp_path)
    dm = instantiate(cfg.data)
    dm.setup()
    pool = Pool.for_config(cfg, dm)
    pool.create()
    built = build(cfg, pool, 1, workers=1)
    assert built["trained"] == [1000, 1001]
    first = {s: read_entry(pool.entry_path(s)) for s in (1000, 1001)}
    kept = pool.entry_path(1001).stat().st_mtime_ns
    pool.entry_path(1000).unlink()
    assert build(cfg, pool, 1, workers=1)["trained"] == [1000]
    again = read_entry(pool.entry_path(1000))
    assert again.confidences.tobytes() == first[1000].confidences.tobytes()
    assert again.metrics == first[1000].metrics
    assert pool.entry_path(1001).stat().st_mtime_ns == kept


def test_pack_is_in_the_fingerprint_above_1_only(tmp_path: Path) -> None:
    """pack=1 is the unpacked path of old: its pools keep the fingerprint they had before the key existed."""
    cfg = compose_config("pool", PACK_TINY, tmp_path)
    dm = instantiate(cfg.data)
    dm.setup()
    one = Pool.for_config(cfg, dm)
    assert "pack" not in one.config
    del cfg.pool.pack
    assert Pool.for_config(cfg, dm).fingerprint == one.fingerprint
    two = Pool.for_config(compose_config("pool", [*PACK_TINY, "pool.pack=2"], tmp_path), dm)
    assert two.fingerprint != one.fingerprint and two.config["pack"] == 2
    assert two.packs(5) == [[1000, 1001], [1002, 1003], [1004, 1005]]
    assert one.packs(2) == [[1000], [1001]]


REFUSED = [
    ("+trainer.gradient_clip_val=1.0", "pool.pack=2 does not implement trainer.gradient_clip_val: set pool.pack=1"),
    (
        "trainer.precision=16-mixed",
        "pool.pack=2 trains in 32-true, 32, bf16-mixed only, not trainer.precision=16-mixed",
    ),
    ("model.optimizer._target_=torch.optim.LBFGS", "pool.pack=2 needs an elementwise optimiser ("),
]


@pytest.mark.parametrize(("override", "says"), REFUSED, ids=[o for o, _ in REFUSED])
def test_a_recipe_the_packed_loop_does_not_follow_is_refused_in_one_line(
    override: str, says: str, tmp_path: Path
) -> None:
    cfg = compose_config("pool", [*PACK_TINY, "pool.pack=2", override], tmp_path)
    with pytest.raises(ChallengeError) as e:
        check_packable(cfg, set(NOT_OUTPUT["trainer"]))
    assert str(e.value).startswith(says) and "\n" not in str(e.value)


def test_an_architecture_that_mixes_models_is_refused() -> None:
    """A layer that normalises across channels would mix the pack's models: refused by name, never trained."""
    nets = [torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4)) for _ in range(2)]
    with pytest.raises(ChallengeError, match=r"layer 1 \(GroupNorm\) mixes or draws across models; set pool.pack=1"):
        pack_nets(nets, (3, 8, 8))
    shuffled = [torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ChannelShuffle(2)) for _ in range(2)]
    with pytest.raises(ChallengeError, match="ChannelShuffle"):
        pack_nets(shuffled, (3, 8, 8))
