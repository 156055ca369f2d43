"""Progress over a known number of steps (a scoring's N runs, a baseline's methods) that is never silent.

At N = 512 a scoring runs for hours; whoever watches it, on a terminal or in a worker's log, must see
how far it is, what it has cost and when it should end. On a terminal that is one line redrawn in
place (a bar); anywhere else (a log file, a pipe) one plain line per step, which a log keeps. A
process of a process pool (the baselines' scorings) writes lines too: several bars redrawn on one
terminal would overwrite each other.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from typing import Callable, TextIO

_WIDTH = 24  # characters of the bar


class Progress:
    """`label: run i/N [bar] detail · elapsed · ETA`, updated as steps end; `note` prints a line beside it."""

    def __init__(self, label: str, total: int, unit: str = "run", stream: TextIO | None = None, live: bool | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stdout
        self.live = _is_terminal(self.stream) and multiprocessing.parent_process() is None if live is None else live
        self.clock = clock
        self.started, self.first_done, self.done, self.detail = clock(), None, 0, ""
        self.drawn = False

    def update(self, done: int, detail: str = "") -> None:
        """`done` steps of `total` are finished; the ETA counts only the steps finished since the first update
        (steps done before, e.g. runs reused from an earlier attempt, took no time here)."""
        if self.first_done is None:
            self.first_done, self.started = done, self.clock()
        self.done, self.detail = done, detail
        self._show()

    def note(self, line: str) -> None:
        """A line of its own (a method's result), with the bar redrawn below it."""
        self._clear()
        print(line, file=self.stream, flush=True)
        if self.drawn:
            self._show()

    def close(self) -> None:
        """The bar's line ended, so that what is printed next starts on a line of its own."""
        if self.live and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False

    def text(self) -> str:
        filled = round(_WIDTH * self.done / self.total) if self.total else _WIDTH
        parts = [f"{self.label}: {self.unit} {self.done}/{self.total} [{'#' * filled}{'.' * (_WIDTH - filled)}]"]
        if self.detail:
            parts.append(self.detail)
        elapsed = self.clock() - self.started
        parts += [f"{_duration(elapsed)} elapsed", f"ETA {self._eta(elapsed)}"]
        return " · ".join(parts)

    def _eta(self, elapsed: float) -> str:
        if self.done >= self.total:
            return "done"
        new = self.done - (self.first_done or 0)
        return _duration(elapsed / new * (self.total - self.done)) if new > 0 else "?"

    def _show(self) -> None:
        if self.live:
            self.stream.write("\r\033[K" + self.text())
            self.drawn = True
        else:
            self.stream.write(self.text() + "\n")
        self.stream.flush()

    def _clear(self) -> None:
        if self.live and self.drawn:
            self.stream.write("\r\033[K")


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    """7 s, 3 min 05 s, 2 h 04 min."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
