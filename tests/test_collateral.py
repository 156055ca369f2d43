"""Collateral damage: the pool keeps outputs on samples of retain and test, and F is computed on them too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate

from challenge.pool import Pool
from challenge.pool.folder import _checksum, fingerprint_config, make_entry, read_entry
from challenge.scoring.collateral import collateral_f, sample_positions
from tests.conftest import TINY, compose_config
from tests.test_attacks import _metric

N, K = 16, 120


def test_the_sample_is_evenly_spaced_over_the_part_and_the_same_every_time() -> None:
    assert sample_positions(10, 5).tolist() == [0, 2, 4, 6, 8]
    assert sample_positions(7, 3).tolist() == [0, 2, 4]
    assert sample_positions(4, 9).tolist() == [0, 1, 2, 3]  # a part smaller than the sample: all of it
    assert sample_positions(5, 0).tolist() == []


def test_f_on_kept_images_is_high_where_nothing_changed_and_low_where_unlearning_left_a_trace() -> None:
    """Identical distributions on the retain sample (F about the forget set's F of retraining itself); a shift
    of two standard deviations on the test sample (detected: F a fraction of that); each part with its interval."""
    rng = np.random.default_rng(0)
    loc, sd = rng.normal(2, 3, K), rng.uniform(0.5, 2.0, K)
    same = rng.normal(loc, sd, (N, K))
    shifted = rng.normal(loc + 2 * sd, sd, (N, K))
    retrained = {part: rng.normal(loc, sd, (N, K)) for part in ("retain", "test")}
    metric = _metric(same, retrained["retain"])
    kept = collateral_f({"retain": same, "test": shifted}, retrained, metric)
    retain, test = kept
    assert (retain.part, test.part, retain.n_examples) == ("retain", "test", K)
    assert retain.forget_quality == pytest.approx(metric.forget_quality)  # the forget set's metric, the same inputs
    assert retain.forget_quality > 0.1 and test.forget_quality < retain.forget_quality / 3
    assert test.forget_quality_ci[1] < retain.forget_quality_ci[0]
    assert collateral_f({}, retrained, metric) is None  # a pool without samples: nothing to say


def test_an_entry_keeps_its_collateral_outputs_under_its_checksum(tmp_path: Path) -> None:
    pool = Pool(tmp_path / "pool", {"a pool of its own": True})  # never the session cache's tiny pool
    pool.create()
    kept = {"retain": np.arange(5.0), "test": np.arange(3.0)}
    entry = make_entry(1000, 1.0, {p: {"acc": 0.5} for p in ("retain", "forget", "test")}, np.ones(4), kept)
    pool.commit(entry)
    back = read_entry(pool.entry_path(1000))
    assert back.checksum == entry.checksum and all(np.array_equal(back.collateral[p], kept[p]) for p in kept)
    plain = make_entry(1001, 1.0, {p: {"acc": 0.5} for p in ("retain", "forget", "test")}, np.ones(4))
    assert plain.collateral is None and plain.checksum != entry.checksum
    assert _checksum(np.ones(4), b"x", None) == _checksum(np.ones(4), b"x", {})  # without samples: the old sum
    tampered = {**kept, "test": np.arange(3.0) + 1}
    assert _checksum(np.ones(4), b"x", tampered) != _checksum(np.ones(4), b"x", kept)


def test_the_sample_size_is_in_the_fingerprint_and_off_leaves_it_as_before(tmp_path: Path) -> None:
    prints = {}
    for value in ("null", "0", "7"):
        cfg = compose_config("pool", [*TINY, f"pool.collateral={value}"], tmp_path)
        dm = instantiate(cfg.data)
        dm.setup()
        prints[value] = fingerprint_config(cfg, dm)
    assert prints["null"]["collateral"] == len(dm.dataset("forget"))  # as many as the forget set
    assert prints["7"]["collateral"] == 7 and "collateral" not in prints["0"]


def test_a_kept_evaluation_reads_back_with_its_collateral_confidences(tmp_path: Path) -> None:
    """The scorer keeps each run's evaluation (challenge.scoring.work), so a resumed scoring judges it again
    without the weights: the collateral samples' confidences come back as written, and without pickle."""
    from challenge.scoring.evaluation import RunEval
    from challenge.scoring.work import read_eval, write_eval

    e = RunEval(
        2,
        7,
        0.5,
        0.25,
        0.75,
        np.arange(3.0),
        np.ones(3),
        np.ones(4),
        np.array([True, False, True, True]),
        {"retain": np.arange(5.0), "test": np.arange(2.0)},
    )
    write_eval(tmp_path / "run.npz", e)
    back = read_eval(tmp_path / "run.npz")
    assert (back.index, back.seed, back.retain_acc, back.test_acc) == (2, 7, 0.5, 0.75)
    assert back.collateral.keys() == e.collateral.keys()
    assert all(np.array_equal(back.collateral[p], e.collateral[p]) for p in e.collateral)
    assert np.array_equal(back.test_correct, e.test_correct) and np.array_equal(back.forget_conf, e.forget_conf)
