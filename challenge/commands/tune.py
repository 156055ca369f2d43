"""`challenge tune <file.py> tune.trials=N`: the file's PARAMS searched with Optuna, on a tuning split.

The engine is Hydra's optuna sweeper (conf/tune.yaml): each trial is a Hydra job that scores the file
with the trial's `+params` through the real scorer and returns the objective. This module adds what
the sweeper leaves to us, in `prepare` before Hydra starts (so that a mistake is one line, exit 2):
the search space from the file's SEARCH, a refusal to tune on the split results are reported on,
the tuning split's original model and pool (built when missing), and a study kept in the cache
under a key of everything that decides a trial's score, so that a killed or repeated tune resumes
and only runs the trials still missing. `BestCallback` writes best.json at the end.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from challenge.checks import Rule, check_value, refuse
from challenge.cli import _quote
from challenge.errors import ChallengeError
from challenge.files import content_hash, write_json
from challenge.scoring.params import declared, search_space
from challenge.scoring.result import Result

OBJECTIVES = ("final_score", "forget_quality")
BEST_FILE = "best.json"
PARAMS_PREFIX = "+params."


def prepare(cfg: DictConfig, overrides: list[str]) -> list[str]:
    """The checked sweep: Hydra's overrides for it (multirun, study, trials to go, the search space)."""
    submission = Path(cfg.submission)
    if not submission.is_file():
        raise ChallengeError(f"no submission file at {submission}: give the path of a .py file with PARAMS and SEARCH")
    source = submission.read_bytes()
    fixed = set(cfg.get("params") or {})
    space = {k: v for k, v in search_space(source, submission).items() if k not in fixed}
    if not space:
        raise ChallengeError(
            f"every name of SEARCH in {submission.name} is fixed by +params: leave at least one to search"
        )
    check_tune(cfg)
    sweep = next(
        (o.split("=", 1)[1].strip("'") for o in overrides if o.startswith("hydra.sweep.dir=")), None
    ) or default_sweep_dir(cfg)
    job = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(job):
        job.paths.output_dir = str(Path(sweep) / "pool")  # the pool's training logs, inside this run's folder
    fingerprint = build_pool(job)
    study, storage = study_of(job, source, space, fingerprint)
    start = start_from_file(study, storage, source, space)
    done = finished_trials(study, storage)
    to_go = max(0, int(cfg.tune.trials) - done)
    print(
        f"tune: {submission.name} on split {cfg.tune.split_seed} (pool {fingerprint}), study {study}: {done} trial(s) "
        f"done, {to_go} to go "
        f"(tune.trials={cfg.tune.trials}), maximising {cfg.tune.objective}",
        flush=True,
    )
    if start:
        print(
            "tune: trial 0 is the file's own PARAMS: " + " ".join(f"{k}={_short(v)}" for k, v in start.items()),
            flush=True,
        )
    return [
        "-m",
        *overrides,
        f"hydra.sweep.dir={_quote(str(sweep))}",
        f"hydra.sweeper.storage={_quote(storage)}",
        f"hydra.sweeper.study_name={study}",
        f"hydra.sweeper.n_trials={to_go}",
        *[f"{PARAMS_PREFIX}{k}={v}" for k, v in space.items()],
    ]


def check_tune(cfg: DictConfig) -> None:
    """What the numbers' rules (challenge.checks) cannot say: a tuning split apart from the evaluation split, and an
    objective the result has; refused in the same one-line form."""
    t = cfg.tune
    if int(t.split_seed) == int(t.evaluation_seed):
        raise refuse(
            "tune.split_seed",
            t.split_seed,
            "is the evaluation split (tune.evaluation_seed): tune on another split, e.g. tune.split_seed=1",
        )
    check_value("tune.objective", t.objective, Rule(str, choices=OBJECTIVES))


def study_of(cfg: DictConfig, source: bytes, space: dict[str, str], pool: str) -> tuple[str, str]:
    """Study name and SQLite URL: one study per file, search space, pool and everything else a trial's score
    depends on."""
    scorer = {k: v for k, v in OmegaConf.to_container(cfg.scorer, resolve=True).items() if k != "fresh"}
    fixed = OmegaConf.to_container(cfg.params, resolve=True) if cfg.get("params") else {}
    key = content_hash(
        {
            "pool": pool,
            "scorer": scorer,
            "batch_size": cfg.data.batch_size,
            "eval_batch_size": cfg.data.eval_batch_size,
            "space": space,
            "fixed": fixed,
            "params_file": cfg.get("params_file"),
            "objective": cfg.tune.objective,
            "budget_share": cfg.tune.budget_share,
            "sampler_seed": cfg.tune.seed,
        },
        12,
    )
    name = f"{Path(cfg.submission).stem}-{hashlib.sha256(source).hexdigest()[:12]}-{key}"
    folder = Path(cfg.paths.cache_dir) / "tune"
    folder.mkdir(parents=True, exist_ok=True)
    return name, f"sqlite:///{folder / name}.db"


def start_from_file(study: str, storage: str, source: bytes, space: dict[str, str]) -> dict[str, Any]:
    """A new study's first trial is the file's own PARAMS (those inside SEARCH's ranges), so the best
    that tune reports is never worse on the tuning split than what the file already ships."""
    import warnings

    import optuna
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.create_study(
        study_name=study, storage=storage, direction="maximize", load_if_exists=True
    )  # conf/tune.yaml: maximize
    if s.get_trials(deepcopy=False):
        return {}
    own = declared(source) or {}
    distributions, _ = create_params_from_overrides([f"{PARAMS_PREFIX}{k}={v}" for k, v in space.items()])
    start = {k: own[k] for k in space if _contains(distributions[PARAMS_PREFIX + k], own.get(k))}
    if start:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            s.enqueue_trial({PARAMS_PREFIX + k: v for k, v in start.items()})
    return start


def _contains(distribution: Any, value: Any) -> bool:
    try:
        return value is not None and bool(distribution._contains(distribution.to_internal_repr(value)))
    except (ValueError, TypeError):  # a categorical without this value
        return False


def finished_trials(study: str, storage: str) -> int:
    """Trials an earlier run of this study completed; one left running by a killed run is marked failed
    (and not counted: it has no value, so the trial is run again with whatever the sampler asks next)."""
    import optuna

    if not Path(storage.removeprefix("sqlite:///")).is_file():
        return 0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        s = optuna.load_study(study_name=study, storage=storage)
    except KeyError:
        return 0
    for t in s.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        s._storage.set_trial_state(t._trial_id, optuna.trial.TrialState.FAIL)
    return len(s.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def default_sweep_dir(cfg: DictConfig) -> Path:
    """Where Hydra would put the sweep (conf/hydra/default.yaml), fixed now so the pool's logs go there too."""
    return (
        Path(cfg.paths.log_dir) / str(cfg.task_name) / "multiruns" / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    )


def build_pool(cfg: DictConfig) -> str:
    """The tuning split's original model and pool, as `challenge baseline` builds them (nothing if cached); its
    fingerprint.
    """
    from challenge.commands.baseline import Stages, prepare_pool
    from challenge.parallel import job_workers

    return prepare_pool(cfg, job_workers(cfg.workers), Stages()).fingerprint


# -- a trial -----------------------------------------------------------------------------------------
def trial(cfg: DictConfig) -> float:
    """One Hydra job of the sweep: the file scored with this trial's params; a verdict scores 0."""
    from hydra.core.hydra_config import HydraConfig

    from challenge.scoring.scorer import score_submission

    result = score_submission(cfg, Path(cfg.submission), Path(cfg.paths.output_dir))
    share = float(cfg.tune.budget_share)
    value = objective(result, str(cfg.tune.objective), share)
    shown = " ".join(f"{k}={_short(v)}" for k, v in (cfg.get("params") or {}).items())
    if not result.scored:
        what = f"{result.status} (0): {result.message}"
    elif (peak := peak_share(result)) > share:
        what = f"0: a run used {peak:.0%} of its budget, over tune.budget_share={share:g}"
    else:
        what = f"{cfg.tune.objective} {value:.4f}"
    print(f"trial {HydraConfig.get().job.num}: {shown} -> {what}", flush=True)
    return value


def objective(result: Result, name: str, share: float) -> float:
    """The trial's value; 0 for a verdict, and for a run past `share` of its budget: the search would
    otherwise settle on the budget's edge, where another split or machine times the values out."""
    if result.score is None or peak_share(result) > share:
        return 0.0
    return float(getattr(result.score, name))


def peak_share(result: Result) -> float:
    """The largest share of its budget a run used; 0 for an exempt file (or a result without runs)."""
    b = result.budget
    return 0.0 if b is None or b.exempt or not b.run_fraction else max(b.run_fraction)


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# -- the end ---------------------------------------------------------------------------------------
class BestCallback(Callback):
    """At the end of the sweep: best.json in the sweep folder, and the command that uses it."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        import optuna

        sweeper, sweep = config.hydra.sweeper, Path(str(config.hydra.sweep.dir))
        study = optuna.load_study(study_name=str(sweeper.study_name), storage=str(sweeper.storage))
        best_file, record = sweep / BEST_FILE, best_record(config, study)
        write_json(best_file, record, indent=2)
        shown = " ".join(f"{k}={_short(v)}" for k, v in record["params"].items())
        print(
            f"tune: best of {record['trials']} trial(s) ({record['failed']} failed): {shown} -> {record['objective']} "
            f"{record['value']:.4f} on split {record['tuning_split']}"
        )
        print(
            f"best:  {best_file}\nscore it on the evaluation split: challenge score {config.submission} "
            f"params_file={best_file}"
        )


def best_record(config: Any, study: Any) -> dict[str, Any]:
    """What best.json holds: the parameters, and enough to know where they came from."""
    import optuna

    states = optuna.trial.TrialState
    complete = study.get_trials(deepcopy=False, states=(states.COMPLETE,))
    if not complete:
        raise ChallengeError(f"study {study.study_name} has no finished trial: run `challenge tune` again")
    best = study.best_trial
    source = Path(str(config.submission))
    return {
        "params": {k.removeprefix(PARAMS_PREFIX): v for k, v in best.params.items()},
        "objective": str(config.tune.objective),
        "value": best.value,
        "trial": best.number,
        "trials": len(complete),
        "failed": len(study.get_trials(deepcopy=False, states=(states.FAIL,))),
        "tuning_split": int(config.tune.split_seed),
        "evaluation_split": int(config.tune.evaluation_seed),
        "submission": {"path": str(source), "sha256": hashlib.sha256(source.read_bytes()).hexdigest()},
        "study": study.study_name,
        "storage": str(config.hydra.sweeper.storage),
        "sampler": "TPE (hydra-optuna-sweeper)",
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "history": [
            {
                "trial": t.number,
                "value": t.value,
                "params": {k.removeprefix(PARAMS_PREFIX): v for k, v in t.params.items()},
            }
            for t in complete
        ],
    }
