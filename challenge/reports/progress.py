"""Progress over a known number of steps (a scoring's N runs, a baseline's methods) that is never silent.

At N = 512 a scoring runs for hours; whoever watches it, on a terminal or in a worker's log, must see
how far it is, what it has cost and when it should end. On a terminal that is one line redrawn in
place: a tqdm bar, which redraws, fits the line to the terminal's width and prints notes above itself.
Anywhere else (a log file, a pipe) one plain line per step, which a log keeps and tqdm would fill with
carriage returns. A process of a process pool (the baselines' scorings) writes lines too: several bars
redrawn on one terminal would overwrite each other.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from typing import Callable, TextIO

from tqdm import tqdm

# Rendered by tqdm.format_meter; every field is a value (a label with braces in it is printed as it is).
_FORMAT = "{desc}: {unit} {done}/{steps} [{bar:24}]{detail} · {elapsed_h} elapsed · ETA {eta_h}"


class Progress:
    """`label: run i/N [bar] detail · elapsed · ETA`, updated as steps end; `note` prints a line beside it."""

    def __init__(
        self,
        label: str,
        total: int,
        unit: str = "run",
        stream: TextIO | None = None,
        live: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stdout
        self.live = _is_terminal(self.stream) and multiprocessing.parent_process() is None if live is None else live
        self.clock = clock
        self.started, self.first_done, self.done, self.detail = clock(), None, 0, ""
        self.bar: _Bar | None = None  # drawn at the first update, as the lines are

    def update(self, done: int, detail: str = "") -> None:
        """`done` steps of `total` are finished; the ETA counts only the steps finished since the first update
        (steps done before, e.g. runs reused from an earlier attempt, took no time here)."""
        if self.first_done is None:
            self.first_done, self.started = done, self.clock()
        self.done, self.detail = done, detail
        if not self.live:
            self.stream.write(self.text() + "\n")
            self.stream.flush()
        elif self.bar is None:
            self.bar = _Bar(self)  # draws itself
        else:
            self.bar.refresh()

    def note(self, line: str) -> None:
        """A line of its own (a method's result), above the bar, which tqdm redraws below it."""
        tqdm.write(line, file=self.stream)
        self.stream.flush()

    def close(self) -> None:
        """The bar's line ended, so that what is printed next starts on a line of its own."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def text(self, width: int | None = None) -> str:
        """The line, cut to `width` characters where given (a terminal's)."""
        elapsed = self.clock() - self.started
        return tqdm.format_meter(
            n=self.done,
            total=self.total,
            elapsed=elapsed,
            ncols=width,
            prefix=self.label,
            unit=self.unit,
            ascii=".#",
            bar_format=_FORMAT,
            done=self.done,
            steps=self.total,
            detail=f" · {self.detail}" if self.detail else "",
            elapsed_h=_duration(elapsed),
            eta_h=self._eta(elapsed),
        )

    def _eta(self, elapsed: float) -> str:
        if self.done >= self.total:
            return "done"
        new = self.done - (self.first_done or 0)
        return _duration(elapsed / new * (self.total - self.done)) if new > 0 else "?"


class _Bar(tqdm):
    """tqdm's terminal handling (redraw in place, the terminal's width, notes above, the closing newline) showing
    Progress.text(): Progress keeps the counts and the clock, so that lines and bar say the same."""

    monitor_interval = 0  # no monitor thread: nothing here iterates, and the scorer's meter polls on a timer

    def __init__(self, progress: Progress):
        self.progress = progress
        super().__init__(
            total=progress.total,
            initial=progress.done,
            file=progress.stream,
            leave=True,
            mininterval=0,
            dynamic_ncols=True,
        )

    def __str__(self) -> str:
        return self.progress.text(self.ncols)


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
