"""The resident data path (challenge.data.resident) against the DataLoader path it replaces: the same
batches from the same random state, hence the same pool entries and the same original, bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from challenge.data.resident import KEYS, ResidentBatches
from challenge.pool import Pool, read_entry
from challenge.pool.build import train_member
from challenge.training.recipe import fit, quiet_lightning, set_threads
from tests.conftest import TINY, compose_config

POOL_TINY = [*TINY, "data.source.images_per_identity=5"]


def _data(tmp_path: Path, overrides: list[str] = ()):
    cfg = compose_config("pool", [*POOL_TINY, *overrides], tmp_path / "out")
    with open_dict(cfg):
        cfg.paths.cache_dir = str(tmp_path / "cache")
    dm = instantiate(cfg.data)
    dm.setup()
    return cfg, dm


def _epochs(batches, epochs: int) -> list[dict[str, torch.Tensor]]:
    return [batch for _ in range(epochs) for batch in batches]


@pytest.mark.parametrize("drop_last", [True, False])
def test_shuffled_batches_and_the_random_state_after_them_are_the_dataloaders(tmp_path: Path, drop_last: bool) -> None:
    """Three epochs from torch's global generator, as the kit's training draws them: every key of every
    batch equal, and the global state left as the DataLoader leaves it (the next epoch's seed comes from it)."""
    _, dm = _data(tmp_path)
    old, new = (
        dm.loader("retain", shuffle=True, drop_last=drop_last),
        ResidentBatches(dm.dataset("retain"), dm.batch_size, True, drop_last),
    )
    assert (
        len(new) == len(old) == (len(dm.dataset("retain")) // 64 if drop_last else -(-len(dm.dataset("retain")) // 64))
    )
    torch.manual_seed(7)
    expected, state = _epochs(old, 3), torch.get_rng_state()
    torch.manual_seed(7)
    got = _epochs(new, 3)
    assert torch.equal(torch.get_rng_state(), state)
    assert len(got) == len(expected) == 3 * len(old)
    for a, b in zip(expected, got):
        assert sorted(b) == sorted(KEYS) == sorted(a)
        assert all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in KEYS)
    first = [int(i) for i in got[0]["image_id"][:3]]
    assert first != [int(i) for i in got[len(old)]["image_id"][:3]]  # a new order each epoch


def test_a_loader_generator_and_the_evaluation_order_are_kept_too(tmp_path: Path) -> None:
    _, dm = _data(tmp_path)
    ds = dm.dataset("forget")
    old = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(3))
    new = ResidentBatches(ds, 16, shuffle=True, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(a["image_id"], b["image_id"]) for a, b in zip(_epochs(old, 2), _epochs(new, 2)))
    evaluation = list(dm.batches("test"))
    assert torch.equal(torch.cat([b["image_id"] for b in evaluation]), ds.indices.new_tensor(dm.split.indices("test")))
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(dm.loader("test"), evaluation))


def test_a_pool_entry_and_the_original_have_the_same_bits_through_either_path(tmp_path: Path) -> None:
    """Two epochs (the sampler reseeds from the global generator between them), the original with its
    validation loader between the epochs, and a pool entry with its weights: DataLoaders vs resident tensors."""
    quiet_lightning()
    threads = torch.get_num_threads()
    set_threads(1)
    try:
        built = {}
        for resident in (False, True):
            cfg, dm = _data(
                tmp_path / str(resident),
                [
                    f"data.resident={str(resident).lower()}",
                    "trainer.max_epochs=2",
                    "pool.keep_checkpoints=true",
                    "trainer.enable_progress_bar=false",
                ],
            )
            pool = Pool.for_config(cfg, dm)
            pool.create()
            entry = train_member(pool, cfg, dm, 1000)
            original, _ = fit(cfg, dm, "train", 0, validate=True)
            weights = torch.load(pool.checkpoint_path(1000), weights_only=True)["state_dict"]
            built[resident] = (
                pool.fingerprint,
                read_entry(pool.entry_path(1000)),
                entry,
                weights,
                original.net.state_dict(),
            )
    finally:
        set_threads(threads)
    (key_a, stored_a, entry_a, weights_a, orig_a), (key_b, stored_b, entry_b, weights_b, orig_b) = (
        built[False],
        built[True],
    )
    assert key_a == key_b  # data.resident is not part of the pool's key: the outputs are the same
    assert stored_a.confidences.tobytes() == stored_b.confidences.tobytes() and entry_a.metrics == entry_b.metrics
    assert weights_a.keys() == weights_b.keys() and all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert all(torch.equal(orig_a[k], orig_b[k]) for k in orig_a)
    assert not torch.equal(weights_a["fc.weight"], orig_a["fc.weight"])  # two models, not one compared with itself
