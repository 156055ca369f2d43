"""The power figure on kept confidences whose answer is known: a method drawn like the retrained models, one
shifted a little and one shifted a lot, and a copy of one (a tie at any N)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from challenge.reports.power import format_power, power
from challenge.scoring.compare import Confidences

N, K = 16, 40


def _kept(shift: float, rng: np.random.Generator, retrained: np.ndarray) -> Confidences:
    return Confidences(rng.normal(shift, 1.0, (N, K)), retrained, "pool")


@pytest.fixture(scope="module")
def figure():  # noqa: ANN201
    rng = np.random.default_rng(0)
    retrained = rng.normal(0.0, 1.0, (N, K))
    like, little, lot = (_kept(s, rng, retrained) for s in (0.0, 0.6, 3.0))
    copy = Confidences(lot.unlearned.copy(), retrained, "pool")
    ranked = [("like", like), ("little", little), ("lot", lot), ("copy", copy)]
    return power(ranked, grid=(4, 8), n_bootstrap=30)


def test_intervals_narrow_as_n_grows_and_more_pairs_are_told_apart(figure) -> None:  # noqa: ANN001
    assert [p.n for p in figure.points] == [4, 8, 16] and [p.groups for p in figure.points] == [4, 2, 1]
    widths = [p.width for p in figure.points]
    assert widths[0] > widths[1] > widths[2], widths
    assert figure.points[0].separated <= figure.points[-1].separated


def test_each_pair_gets_the_n_that_separates_it_and_a_copy_is_a_tie(figure) -> None:  # noqa: ANN001
    little_lot, like_little, lot_copy = (
        next(p for p in figure.pairs if (p.above, p.below) == names)
        for names in (("little", "lot"), ("like", "little"), ("lot", "copy"))
    )
    assert little_lot.separated and 3 <= little_lot.needed < N  # a shift of 3 SD: told apart with fewer than 16
    assert like_little.difference > 0 and like_little.half_width > 0
    assert lot_copy.difference == 0 and lot_copy.needed is None and not lot_copy.separated
    assert "lot > copy" in figure.beyond
    open_pairs = [p.needed for p in figure.pairs if not p.separated and p.needed is not None]
    assert figure.recommended == (max(n for n in open_pairs if n <= 512) if open_pairs else None)
    text = format_power(figure)
    assert "lot > copy: ΔF +0.000" in text and "never separated (same F)" in text and "ties in practice" in text
    assert "little > lot: ΔF" in text and f"separated at N = {N}" in text
    for pair in figure.pairs:  # a pair separated at the kept N needs no more; one that is not needs more
        assert pair.needed is None or (pair.needed <= N) == pair.separated, pair


def test_one_method_has_no_neighbour() -> None:
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="at least two scored methods"):
        power([("only", _kept(0.0, rng, rng.normal(size=(N, K))))])


def test_bad_power_settings_are_one_line(tmp_path) -> None:  # noqa: ANN001
    from challenge.checks import check_values
    from challenge.commands.baseline import power_grid
    from challenge.errors import ChallengeError
    from tests.conftest import TINY, compose_config

    for value, said in (
        ("power.grid=4", "power.grid=4 is not a list of whole numbers >= 3"),
        ("power.grid=[4,2]", "power.grid[1]=2 is out of range: it must be >= 3"),
        ("power.n_bootstrap=0", "power.n_bootstrap=0 is out of range: it must be >= 1"),
    ):
        cfg = compose_config("baseline", [*TINY, value], tmp_path)
        with pytest.raises(ChallengeError, match=f"^{re.escape(said)}"):
            check_values(cfg)
            power_grid(cfg)
