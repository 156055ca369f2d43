"""The double-threshold rules of the epsilon metric on the scorer's grid, searched by bounds.

For each example the scorer tries n_right x 400 intervals [l_ji, r_j] (n_right = 400, or 401 by
rounding): r_j = linspace(lo, hi, n_right) and, for each r_j, l_ji = linspace(r_j - w - 2,
r_j - w + 2, 400). A rule's counts are a right-end term (data at or below r_j, exact per right
end) minus a left-end term (data below l_ji). All left ends lie, up to rounding, on one regular
lattice (``lattice``), so the left-end counts of all of them come from one pass; data that sit on
a lattice point up to rounding (the peaky minimum always does) are 'unsure' there and settled by
recomputing those left ends exactly as numpy does.

Epsilon never rises with false positives nor falls with true positives (``bound_table``), so a
rectangle of rules (a run of right ends by a run of left ends) is bounded by one lookup: its
first right end with its last left end has the fewest false positives any of its rules can have,
its last right end with its first left end the most true positives. Blocks of 16 x 16 rules are
bounded, the ones that can beat the best rule known (the single-threshold family's, and a
sample) are split into 4 x 4, and only the rules of the 4 x 4 blocks that still can are scored:
at N = 512 that is well under 1% of the 160,000 rules, and the result is the same maximum.
"""

from __future__ import annotations

import math

import numpy as np

BUFFER = 2.0  # how far the double-threshold grid reaches beyond the peaky distribution
LEFT = 400  # left ends per right end: 2 * BUFFER * 100 thresholds per unit
_BLOCKS = (16, 4)  # sides of the rule blocks bounded in turn, coarse to fine (each divides 400)
_UNSURE = np.int32(1 << 30)  # flag on a lattice count whose point a datum sits on (counts < 2^25)
_DENSE_POINTS = 1 << 12  # lattices up to this size are written out; larger ones (401 right ends) are looked up


def double_grid(
    peaky: np.ndarray, other: np.ndarray, table: np.ndarray, bound_table: np.ndarray, floor: np.ndarray
) -> np.ndarray:
    """Best interval rule of each example (float32), or ``floor`` where none beats it."""
    width = peaky[:, -1] - peaky[:, 0]
    lo = (peaky[:, 0] + width) - BUFFER  # same operations, hence same rounding, as the scorer
    hi = peaky[:, -1] + BUFFER
    n_right = np.ceil((hi - lo) * 100).astype(np.int64)  # 400, or 401 by rounding
    best = np.empty(len(peaky), np.float32)
    for nr in map(int, np.unique(n_right)):
        sel = np.flatnonzero(n_right == nr)
        best[sel] = _Rules(peaky[sel], other[sel], width[sel], lo[sel], hi[sel], nr, table, bound_table).best(
            floor[sel]
        )
    return best


def lattice(n_right: int) -> tuple[int, int]:
    """(a, c) such that left end i of right end j sits at lattice point a*j + c*i, up to rounding.

    Right ends step by 4/(n_right - 1) and left ends by 4/399, so with g = gcd(399, n_right - 1)
    both are whole multiples of (4/399)/c with c = (n_right - 1)/g: one lattice holds all
    160,000 left ends, and the data counts below all of them come from one pass.
    """
    g = math.gcd(LEFT - 1, n_right - 1)
    return (LEFT - 1) // g, (n_right - 1) // g


def left_threshold(start: np.ndarray, stop: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Element i of np.linspace(start, stop, 400), with numpy's own arithmetic (bit-exact)."""
    return np.where(i == LEFT - 1, stop, i * ((stop - start) / (LEFT - 1)) + start)


class _Rules:
    """The n_right x 400 interval rules of a chunk of examples: their counts, bounds and scores.

    Counts are int32 and read through flat indices (``np.take``), many times faster than
    two-dimensional fancy indexing; ``other = key // (n + 1)`` and ``peaky = key - other * (n + 1)``.
    """

    def __init__(
        self,
        peaky: np.ndarray,
        other: np.ndarray,
        width: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        n_right: int,
        table: np.ndarray,
        bound_table: np.ndarray,
    ) -> None:
        self.n_right, (self.a, self.c), self.n1 = n_right, lattice(n_right), peaky.shape[1] + 1
        self.table, self.bound_table = table, bound_table
        right = np.linspace(lo, hi, n_right, axis=1)  # [E, n_right], bit-identical to per-example calls
        self.right, self.width = right, width
        start, stop = self._left_span(np.arange(len(lo)), np.zeros(len(lo), np.int64))
        values = np.concatenate([other, peaky], axis=1)
        self.right_key = _right_keys(values, right, self.n1).ravel()
        size = self.a * (n_right - 1) + self.c * (LEFT - 1) + 1
        self.row = size + 1
        entry, unsure = _entry_points(values, start, (stop - start) / (LEFT - 1) / self.c, size)
        ue, ud = np.nonzero(unsure)
        point = ue * self.row + entry[ue, ud] - 1  # flagged: keys there turn negative, nothing scores them unsettled
        self.below = (_DenseCounts if self.row <= _DENSE_POINTS else _SparseCounts)(entry, self.n1, self.row, point)
        self.unsure = _on_points(point, values[ue, ud], np.where(ud < other.shape[1], self.n1, 1))

    def _left_span(self, e: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(start, stop) of right end j's left ends, with the scorer's operations (same rounding)."""
        centre = self.right[e, j] - self.width[e]
        return centre - BUFFER, centre + BUFFER

    def best(self, floor: np.ndarray) -> np.ndarray:
        """Each example's best rule, or floor: blocks bounded coarse to fine, survivors scored."""
        best, e, j0, i0 = self._coarsest(floor, _BLOCKS[0])
        for side, finer in zip(_BLOCKS, (*_BLOCKS[1:], 1)):
            if side != _BLOCKS[0]:
                live = self._bound(e, j0, i0, side) > best[e]
                e, j0, i0 = e[live], j0[live], i0[live]
            e, j0, i0 = _split(e, j0, i0, side, finer, self.n_right)
        self._score(best, e, j0, i0)
        return best

    def _coarsest(self, floor: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every example's blocks at once: a first best (floor, and each block's middle rule) and
        the blocks (example, first right end, first left end) whose bound beats it."""
        right = self.right_key.reshape(len(floor), self.n_right)
        rows = np.arange(len(floor))[:, None, None] * self.row
        j0, i0 = np.arange(0, self.n_right, side), np.arange(0, LEFT, side)
        j1, mid = np.minimum(j0 + side, self.n_right) - 1, np.minimum(j0 + side // 2, self.n_right - 1)

        def left(j: np.ndarray, i: np.ndarray, past: int = 0) -> np.ndarray:  # [E, blocks of j, blocks of i]
            return self.below.take(rows + (self.a * j[:, None] + self.c * i[None, :] + past))

        sample = np.take(right, mid, axis=1)[:, :, None] - left(mid, i0 + side // 2)
        best = np.maximum(floor, np.take(self.table, sample, mode="clip").max(axis=(1, 2)))
        bound = self._bound_of(
            np.take(right, j0, axis=1)[:, :, None],
            np.take(right, j1, axis=1)[:, :, None],
            left(j0, i0) & ~_UNSURE,
            left(j1, i0 + side - 1, past=1) & ~_UNSURE,
        )
        e, bj, bi = np.nonzero(bound > best[:, None, None])
        return best, e, j0[bj], i0[bi]

    def _bound(self, e: np.ndarray, j0: np.ndarray, i0: np.ndarray, side: int) -> np.ndarray:
        """No rule of the block (right ends j0.., left ends i0.., ``side`` of each) scores above this."""
        j1 = np.minimum(j0 + side, self.n_right) - 1
        return self._bound_of(
            np.take(self.right_key, e * self.n_right + j0),
            np.take(self.right_key, e * self.n_right + j1),
            self.below.take(e * self.row + self.a * j0 + self.c * i0) & ~_UNSURE,
            self.below.take(e * self.row + self.a * j1 + self.c * (i0 + side - 1) + 1) & ~_UNSURE,
        )

    def _bound_of(
        self, first_right: np.ndarray, last_right: np.ndarray, first_left: np.ndarray, last_left: np.ndarray
    ) -> np.ndarray:
        """The bound of blocks from their corner counts: the first right end with the last left end
        has the fewest false positives any rule of the block can have, the last right end with the
        first left end the most true positives. Left counts are read without unsure data at the
        first point and one point past the last, which brackets the true counts in between."""
        n1 = self.n1
        fewest_other = first_right // n1 - last_left // n1
        most_peaky = last_right - last_right // n1 * n1 - (first_left - first_left // n1 * n1)
        return np.take(self.bound_table, np.clip(fewest_other, 0, n1 - 1) * n1 + np.clip(most_peaky, 0, n1 - 1))

    def _score(self, best: np.ndarray, e: np.ndarray, j: np.ndarray, i: np.ndarray) -> None:
        """Raise best[e] to the score of rule (j, i), settling exactly those a datum sits on."""
        point = e * self.row + self.a * j + self.c * i
        below = self.below.take(point)
        right = np.take(self.right_key, e * self.n_right + j)
        np.maximum.at(best, e, np.take(self.table, right - below, mode="clip"))
        unsure = np.flatnonzero(below & _UNSURE)
        if len(unsure):
            e, j, i, point = e[unsure], j[unsure], i[unsure], point[unsure]
            key = right[unsure] - (below[unsure] & ~_UNSURE) - self._moved_below(e, j, i, point)
            np.maximum.at(best, e, np.take(self.table, key, mode="clip"))

    def _moved_below(self, e: np.ndarray, j: np.ndarray, i: np.ndarray, point: np.ndarray) -> np.ndarray:
        """Weight of the data on each rule's lattice point that lie below its exact left end.

        Such data were counted from the next point on; each rule's exact left end, as
        np.linspace computes it, decides whether they are below it.
        """
        points, x, w = self.unsure
        first = np.searchsorted(points, point)  # the data on each rule's point: [first, first + count)
        count = np.searchsorted(points, point, side="right") - first
        rule = np.repeat(np.arange(len(e)), count)
        datum = np.repeat(first - np.cumsum(count) + count, count) + np.arange(count.sum())
        left = left_threshold(*self._left_span(e[rule], j[rule]), i[rule])
        return np.bincount(rule, np.where(x[datum] < left, w[datum], 0), minlength=len(e)).astype(np.int32)


def _on_points(point: np.ndarray, x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unsure data sorted by lattice point, equal values on a point merged (ties are common)."""
    order = np.lexsort((x, point))
    point, x, w = point[order], x[order], w[order]
    new = np.ones(len(point), bool)
    new[1:] = (point[1:] != point[:-1]) | (x[1:] != x[:-1])
    first = np.flatnonzero(new)
    return point[first], x[first], np.add.reduceat(w, first) if len(first) else w


def _split(
    e: np.ndarray, j0: np.ndarray, i0: np.ndarray, side: int, finer: int, n_right: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The finer blocks (or single rules, finer = 1) of each block, those within the grid."""
    k = side // finer
    dj = np.repeat(np.arange(0, side, finer), k)
    di = np.tile(np.arange(0, side, finer), k)
    j, i = (j0[:, None] + dj).ravel(), (i0[:, None] + di).ravel()
    inside = j < n_right
    return np.repeat(e, k * k)[inside], j[inside], i[inside]


def _right_keys(values: np.ndarray, right: np.ndarray, n1: int) -> np.ndarray:
    """[E, n_right] int32: per right end, ``other_at_or_below * n1 + peaky_at_or_below``.

    Each datum's first right end at or above it comes from the grid's step; the few data within
    rounding of a right end are placed by comparing with the right end itself.
    """
    n_ex, n_right = right.shape
    lo, hi = right[:, :1], right[:, -1:]
    coord = (values - lo) / ((hi - lo) / (n_right - 1))
    first = np.clip(np.ceil(coord), 0, n_right).astype(np.int64)
    rows, cols = np.nonzero(np.abs(coord - np.rint(coord)) < 1e-6)
    k, x = first[rows, cols], values[rows, cols]
    k += (k < n_right) & (right[rows, np.minimum(k, n_right - 1)] < x)
    k -= (k > 0) & (right[rows, np.maximum(k - 1, 0)] >= x)
    first[rows, cols] = k
    first += np.arange(n_ex)[:, None] * (n_right + 1)
    first <<= 1
    first[:, values.shape[1] // 2 :] += 1  # the peaky half, in the odd bins
    counts = np.bincount(first.ravel(), minlength=2 * n_ex * (n_right + 1)).reshape(n_ex, n_right + 1, 2)
    return np.cumsum((counts[:, :n_right, 0] * n1 + counts[:, :n_right, 1]), axis=1, dtype=np.int32)


def _entry_points(values: np.ndarray, origin: np.ndarray, unit: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """First lattice point whose left end lies above each datum, and whether that is unsure.

    Real left ends differ from ``origin + m * unit`` by a few ulps; a datum farther than 1e-10
    (relative) from every lattice point is therefore classified exactly, and one closer is
    'unsure': counted from the next point on, and settled exactly at its own point later.
    """
    coord = (values - origin[:, None]) / unit[:, None]
    below = np.floor(coord)
    tol = 1e-10 * (8.0 + np.abs(values).max()) / unit[:, None]
    ahead = coord - below
    unsure = (ahead <= tol) | (ahead >= 1 - tol)
    below += unsure & (ahead >= 0.5)  # the nearest point, where a datum just under it sits on it
    unsure &= (below >= 0) & (below < size)
    return np.clip(below + 1, 0, size).astype(np.int64), unsure


class _DenseCounts:
    """Weighted counts of the data below every lattice point of each example, written out:
    a histogram of the entry points (other data in even bins, peaky in odd), summed along."""

    def __init__(self, entry: np.ndarray, n1: int, row: int, unsure: np.ndarray) -> None:
        n_ex, per = entry.shape
        bins = (entry + np.arange(n_ex)[:, None] * row) * 2
        bins[:, per // 2 :] += 1
        hist = np.bincount(bins.ravel(), minlength=2 * n_ex * row).reshape(n_ex, row, 2)
        self.counts = np.cumsum(hist[:, :, 0] * n1 + hist[:, :, 1], axis=1, dtype=np.int32).ravel()
        self.counts[unsure] |= _UNSURE

    def take(self, points: np.ndarray) -> np.ndarray:
        """int32 counts at flat points ``example * row + point``, flagged where data are unsure."""
        return np.take(self.counts, points)


class _SparseCounts:
    """The same counts, looked up among the data's sorted entry points: for lattices (320,000
    points at 401 right ends) far larger than the 2N data and the few thousand points read."""

    def __init__(self, entry: np.ndarray, n1: int, row: int, unsure: np.ndarray) -> None:
        n_ex, per = entry.shape
        flat = (entry + np.arange(n_ex)[:, None] * row) * 2 + (np.arange(per) >= per // 2)
        merged = np.sort(flat, axis=1, kind="stable").ravel()  # rows in order: sorted overall
        self.entries, self.per, self.row = merged >> 1, per, row
        self.level = np.concatenate([[0], np.cumsum(np.where(merged & 1, 1, n1))])
        self.unsure = np.unique(unsure)

    def take(self, points: np.ndarray) -> np.ndarray:
        """int32 counts at flat points ``example * row + point``, flagged where data are unsure."""
        counts = (
            self.level[np.searchsorted(self.entries, points, side="right")] - self.level[points // self.row * self.per]
        )
        at = np.minimum(np.searchsorted(self.unsure, points), len(self.unsure) - 1)
        flagged = (self.unsure[at] == points) if len(self.unsure) else np.zeros(points.shape, bool)
        return (counts | np.where(flagged, _UNSURE, 0)).astype(np.int32)
