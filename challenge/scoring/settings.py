"""`scorer.*` resolved and checked once: everything that can change a result, and nothing else.

A frozen dataclass, so that its hash keys the result cache, and plain values only, so that the
Codabench bundle can ship it to the ingestion and scoring programs in a JSON file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from challenge.scoring.gpu import resolve_device
from challenge.scoring.sandbox import Limits


@dataclass(frozen=True)
class Settings:
    n_runs: int
    first_seed: int
    budget_fraction: float
    budget_seconds: float | None  # a fixed budget in the clock's seconds instead of a priced one
    budget_cap: float  # one run is stopped at once past this many budgets
    wall_slack: float  # ... and, when it idles, past this many times that cap by the wall clock
    calibration_steps: int
    startup_seconds: float
    memory_mb: int | None
    file_size_mb: int | None
    log_cap_bytes: int
    n_bootstrap: int
    isolation: str
    threads: int
    batch_size: int
    eval_batch_size: int
    budget_exempt: bool = False  # see challenge.scoring.scorer.budget_exempt
    max_processes: int | None = 64  # processes and threads of the child at once (see challenge.scoring.sandbox)
    scratch_mb: int | None = 2048  # each of the child's RAM-backed folders, and the disk beside its runs' weights
    device: str = "cpu"  # "cpu" or "cuda", resolved once from scorer.device (challenge.scoring.gpu): the runs and the evaluation

    @classmethod
    def from_config(cls, cfg: Any) -> "Settings":
        s = cfg.scorer  # values checked by challenge.checks (types, ranges) before they get here
        return cls(
            n_runs=int(s.n_runs), first_seed=int(s.first_seed), budget_fraction=float(s.budget_fraction),
            budget_seconds=None if s.budget_seconds is None else float(s.budget_seconds),
            budget_cap=float(s.budget_cap), wall_slack=float(s.wall_slack), calibration_steps=int(s.calibration_steps),
            startup_seconds=float(s.startup_seconds), memory_mb=s.memory_mb, file_size_mb=s.file_size_mb,
            log_cap_bytes=int(s.log_cap_bytes), n_bootstrap=int(s.n_bootstrap), isolation=str(s.isolation),
            threads=int(s.threads), batch_size=int(cfg.data.batch_size), eval_batch_size=int(cfg.data.eval_batch_size),
            max_processes=s.get("max_processes", 64), scratch_mb=s.get("scratch_mb", 2048), device=resolve_device(str(s.get("device", "auto"))),
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Settings":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def limits(self) -> Limits:
        return Limits(self.memory_mb, self.file_size_mb, self.log_cap_bytes, self.max_processes, self.scratch_mb)

    def rule_text(self) -> str:
        if self.budget_seconds is not None:
            return f"{self.budget_seconds:g} s per run (scorer.budget_seconds)"
        return f"{self.budget_fraction:.0%} of what retraining from scratch costs, priced on the scoring machine before the file is imported"

    def wall_estimate(self, mean_retrain_seconds: float) -> float:
        """Seconds of wall clock the runs may take at most, from the pool's own build times (for time limits)."""
        per_run = self.budget_seconds if self.budget_seconds is not None else self.budget_fraction * mean_retrain_seconds
        return self.n_runs * per_run * self.wall_slack

    def seed(self, index: int) -> int:
        return self.first_seed + index
