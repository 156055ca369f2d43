"""Progress over N steps: plain lines with the right counts off a terminal, one redrawn line on one."""

from __future__ import annotations

import io
import json
from pathlib import Path

from challenge.reports.progress import Progress
from challenge.scoring.scorer import run_progress
from challenge.scoring.settings import Settings
from challenge.scoring.work import Work
from tests.conftest import TINY, compose_config


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lines_off_a_terminal_count_the_steps_and_give_an_eta() -> None:
    out, clock = io.StringIO(), Clock()
    bar = Progress("scoring x.py", 4, stream=out, clock=clock)
    assert bar.live is False  # a StringIO is no terminal: the worker's log gets lines
    bar.update(1, "0.00 of 4 budgets used")  # one run reused from an earlier attempt
    clock.now += 10
    bar.update(2, "1.50 of 4 budgets used")
    clock.now += 3600
    bar.update(4, "3.00 of 4 budgets used")
    bar.close()
    assert out.getvalue().splitlines() == [
        "scoring x.py: run 1/4 [######..................] · 0.00 of 4 budgets used · 0 s elapsed · ETA ?",
        "scoring x.py: run 2/4 [############............] · 1.50 of 4 budgets used · 10 s elapsed · ETA 20 s",
        "scoring x.py: run 4/4 [########################] · 3.00 of 4 budgets used · 1 h 00 min elapsed · ETA done",
    ]


def screen(written: str) -> list[str]:
    """What a terminal shows after `written`: a carriage return goes back to the line's start and the text after it
    overwrites what is there (tqdm pads with spaces to erase a longer line), a newline starts the next line."""
    lines = []
    for raw in written.split("\n"):
        line = ""
        for part in raw.split("\r"):
            line = part + line[len(part) :]
        lines.append(line.rstrip())
    return lines


def test_on_a_terminal_one_line_is_redrawn_and_notes_go_above_it() -> None:
    out, clock = io.StringIO(), Clock()
    bar = Progress("baseline", 2, unit="method", stream=out, live=True, clock=clock)
    bar.update(0)
    assert screen(out.getvalue()) == ["baseline: method 0/2 [........................] · 0 s elapsed · ETA ?"]
    clock.now += 65
    bar.note("  finetune: scored")
    assert screen(out.getvalue()) == [
        "  finetune: scored",
        "baseline: method 0/2 [........................] · 1 min 05 s elapsed · ETA ?",
    ]
    bar.update(1)
    bar.close()
    assert screen(out.getvalue()) == [
        "  finetune: scored",
        "baseline: method 1/2 [############............] · 1 min 05 s elapsed · ETA 1 min 05 s",
        "",  # closed: what is printed next starts on a line of its own
    ]
    assert out.getvalue().count("\n") == 2  # redrawn in place, not a line per update


def test_a_bar_is_cut_to_the_terminals_width() -> None:
    bar = Progress("scoring a_long_name.py", 512, stream=io.StringIO(), live=False, clock=Clock())
    bar.update(3, "0.42 of 512 budgets used")
    assert bar.text(40) == "scoring a_long_name.py: run 3/512 [.....", bar.text()
    assert bar.text() == (
        "scoring a_long_name.py: run 3/512 [........................] · 0.42 of 512 budgets used · 0 s elapsed · ETA ?"
    )


def test_the_scorers_runs_write_their_ledger_and_a_line_each(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    s = Settings.from_config(compose_config("score", TINY, tmp_path))
    work = Work(tmp_path / "work")
    on_run, bar = run_progress(work, Path("mine.py"), s, todo=2, before=0.5)
    for index in (1, 2):
        on_run(index, {"cost": 0.25, "budget": 0.5, "wall": 0.3, "retrain_seconds": 2.5, "clock": "cpu"})
    bar.close()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" [")[0] for line in lines] == [
        "scoring mine.py: run 1/3",
        "scoring mine.py: run 2/3",
        "scoring mine.py: run 3/3",
    ]
    assert [line.split(" · ")[1] for line in lines] == [
        "0.50 of 3 budgets used",
        "1.00 of 3 budgets used",
        "1.50 of 3 budgets used",
    ]
    assert json.loads(work.ledger_path(2).read_text())["cost"] == 0.25
