"""Leaderboard rows: neighbours compared paired where their kept confidences are there, by intervals
where not, and the ceiling column; on results built from synthetic confidences (the scored
baselines' table is in tests/test_baselines.py)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from challenge.reports.leaderboard import leaderboard_table, rank, write_html
from challenge.scoring.compare import (
    CONFIDENCES_FILE,
    Confidences,
    compare_kept,
    read_confidences,
    write_confidences,
)
from challenge.scoring.result import Ceiling, Result
from challenge.scoring.row import LeaderboardRow
from tests.results import make_result, metric_score

N, K = 16, 30
CEILING = Ceiling(0.15, [0.12, 0.18], 0.15, 16, 30, "pool")


def retrained() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    loc = rng.normal(2, 3, K)
    return loc, rng.normal(loc, 1.0, (N, K))


def scored(
    folder: Path, unlearned: np.ndarray, r: np.ndarray, keep: bool = True, ceiling: Any = CEILING
) -> tuple[Result, Path]:
    """A result as the scorer writes it, its score by the real metric, and its kept confidences in `folder`."""
    result = make_result(
        metric_score(unlearned, r, ceiling=ceiling), forget_confidences=CONFIDENCES_FILE if keep else None
    )
    if keep:
        write_confidences(folder / CONFIDENCES_FILE, Confidences(unlearned, r, "pool-1"))
    return result, folder


def cell(lines: list[str], place: int, column: str) -> str:
    """The cell of the row ranked `place` under `column`, the column's extent read off the dashes line."""
    dashes = next(i for i, line in enumerate(lines) if line.startswith("-"))
    at = lines[dashes - 1].index(column)
    span = next(m.span() for m in re.finditer(r"-+", lines[dashes]) if m.start() <= at < m.end())
    return lines[dashes + place][span[0] : span[1]].strip()


@pytest.fixture
def three(tmp_path: Path) -> list[tuple[str, Result, Path]]:
    """good and twin forget alike (twin is good with a little noise); bad keeps every example 3 sd away."""
    loc, r = retrained()
    rng = np.random.default_rng(1)
    good = rng.normal(loc, 1.0, (N, K))
    twin = good + rng.normal(0, 0.05, (N, K))
    bad = rng.normal(loc + 3.0, 1.0, (N, K))
    out = []
    for name, u in (("good", good), ("twin", twin), ("bad", bad)):
        (tmp_path / name).mkdir()
        out.append((name, *scored(tmp_path / name, u, r)))
    return out


def test_neighbours_get_the_paired_p_and_close_ones_are_marked(three: list[tuple[str, Result, Path]]) -> None:
    rows = rank(LeaderboardRow.from_result(name, result, folder) for name, result, folder in three)
    assert [r.name for r in rows][-1] == "bad"
    first, second = (three[[t[0] for t in three].index(rows[i].name)] for i in (0, 1))
    expected = compare_kept(
        *(read_confidences(t[2] / CONFIDENCES_FILE) for t in (first, second)), n_bootstrap=20
    ).p_a_above
    assert rows[0].p_next == expected and rows[0].close == (0.05 < expected < 0.95)
    assert rows[0].close  # good and its twin are not told apart
    assert rows[1].p_next == 1.0 and not rows[1].close  # the twin clearly beats bad
    assert rows[2].p_next is None and not rows[2].close
    table = leaderboard_table(rows).splitlines()
    assert cell(table, 1, "P(F > next)") == f"{expected:.3f} ≈" and cell(table, 2, "P(F > next)") == "1.000"
    assert cell(table, 3, "P(F > next)") == "—"
    assert table[-1] == (
        "≈: P(F > next row's F) lies between 5% and 95% in a paired bootstrap (same retrained models and forget "
        "examples), "
        "so the evaluation does not separate the two rows' F"
    )


def test_a_row_ranked_above_by_final_score_but_clearly_below_in_f_is_not_marked_close(
    three: list[tuple[str, Result, Path]],
) -> None:
    """Rows are ordered by final score (F times the accuracy ratios): P near 0 is a clear separation the other way."""
    by_name = {name: (result, folder) for name, result, folder in three}
    bad, folder = by_name["bad"]
    bad = replace(
        bad, score=replace(bad.score, final_score=1.0)
    )  # as if its accuracy ratios lifted it above the others
    rows = rank([LeaderboardRow.from_result("bad", bad, folder), LeaderboardRow.from_result("twin", *by_name["twin"])])
    assert [r.name for r in rows] == ["bad", "twin"]
    assert rows[0].p_next == 0.0 and not rows[0].close
    assert cell(leaderboard_table(rows).splitlines(), 1, "P(F > next)") == "0.000"


def test_a_row_without_kept_confidences_falls_back_to_interval_overlap(tmp_path: Path) -> None:
    loc, r = retrained()
    rng = np.random.default_rng(2)
    u = rng.normal(loc, 1.0, (N, K))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, _ = scored(tmp_path / "a", u, r)
    b, _ = scored(tmp_path / "b", u + rng.normal(0, 0.05, (N, K)), r, keep=False)
    rows = rank(
        [LeaderboardRow.from_result("a", a, tmp_path / "a"), LeaderboardRow.from_result("b", b, tmp_path / "b")]
    )
    upper = rows[0]
    assert upper.p_next is None and upper.close == upper.overlap is True
    table = leaderboard_table(rows)
    assert "CI overlap ≈" in table
    assert table.splitlines()[-1] == (
        "CI overlap ≈ / CI apart: a pair where a row lacks its kept confidences (forget_confidences.npz) "
        "is compared by whether their F intervals overlap"
    )
    assert cell(table.splitlines(), 1, "P(F > next)") == "CI overlap ≈" and upper.compared == "intervals"
    # a result that names the file but lost it: the same fallback, not a crash
    gone = LeaderboardRow.from_result("a", a, tmp_path / "elsewhere")
    assert gone.confidences is None


def test_f_over_the_ceiling_and_the_ceiling_line(three: list[tuple[str, Result, Path]], tmp_path: Path) -> None:
    rows = rank(LeaderboardRow.from_result(name, result, folder) for name, result, folder in three)
    assert all(r.f_of_ceiling == pytest.approx(r.forget_quality / 0.15) for r in rows)
    lines = leaderboard_table(rows).splitlines()
    assert lines[0] == "ceiling: F = 0.150 [0.120, 0.180] (retrained vs retrained, N=16, K=30)"
    assert cell(lines, 1, "F/ceiling") == f"{rows[0].forget_quality / 0.15:.3f}"
    page = write_html("t", rows, {name: result for name, result, _ in three}, tmp_path / "p.html").read_text()
    assert (
        "ceiling: F = 0.150 [0.120, 0.180] (retrained vs retrained, N=16, K=30)" in page
        and "<th>F/ceiling</th>" in page
    )
    assert (
        page.count('<h2 id="') == 3 and page.count("forget image 9 (person 7), ε = 1.20") == 3
    )  # each method's plots and leak
    assert "≈: P(F &gt; next row&#x27;s F) lies between 5% and 95%" in page


def test_without_a_ceiling_the_column_says_so_and_no_line_is_shown(tmp_path: Path) -> None:
    loc, r = retrained()
    u = np.random.default_rng(3).normal(loc, 1.0, (N, K))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, _ = scored(tmp_path / "a", u, r, ceiling=None)
    b, _ = scored(tmp_path / "b", u, r, ceiling=replace(CEILING, forget_quality=0.2))
    rows = rank([LeaderboardRow.from_result("a", a, tmp_path / "a"), LeaderboardRow("broken", "timeout")])
    table = leaderboard_table(rows).splitlines()
    assert table[0].startswith("#") and cell(table, 1, "F/ceiling") == "—"
    assert rows[0].f_of_ceiling is None
    mixed = rank(
        [LeaderboardRow.from_result("a", a, tmp_path / "a"), LeaderboardRow.from_result("b", b, tmp_path / "b")]
    )
    assert not leaderboard_table(mixed).startswith("ceiling")  # rows scored against other ceilings: no shared line
