"""`challenge <command> [overrides]`: each command is a Hydra app over the configs in conf/.

Adding a command is one entry in COMMANDS (module:function, config name, help). A command with
`flags` parses its own options with argparse (`challenge submit --team owls x.py`) and its
function gets them as a second argument; every key=value argument stays a Hydra override. Errors
a user can fix (a typo in an override, an unknown model, a missing folder, a refused submission)
end in one line on stderr and exit status 2, never in a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple

from challenge.errors import ChallengeError
from challenge.kit import kit_path

CONF_DIR = kit_path("conf")


class Command(NamedTuple):
    target: str  # "module:function" taking the composed DictConfig
    config: str  # primary config name in conf/
    help: str
    positional: str | None = None  # config key that a leading positional argument sets
    flags: str | None = None  # "module:function" adding argparse options; the target then takes (cfg, args)
    builds_model: bool = False  # check model.net.name before running (it imports timm: not for light commands)
    prepare: str | None = (
        None  # "module:function" taking (composed cfg, overrides), returning the overrides Hydra runs with
    )


_COMPETITION = "challenge.commands.competition"
COMMANDS: dict[str, Command] = {
    "train": Command(
        "challenge.commands.train:run", "train", "train the original model on all training images", builds_model=True
    ),
    "pool": Command(
        "challenge.commands.pool:run",
        "pool",
        "build the reference pool: the original model and N models retrained without the forget set",
        builds_model=True,
    ),
    "score": Command(
        "challenge.commands.score:run",
        "score",
        "score a submission: run its unlearning() N times in a sandbox, compare with the pool",
        positional="submission",
        builds_model=True,
    ),
    "baseline": Command(
        "challenge.commands.baseline:run",
        "baseline",
        "build data, original model and pool, score every baseline, print the leaderboard and write an HTML report",
        builds_model=True,
    ),
    "data preview": Command(
        "challenge.commands.preview:run", "preview", "write a contact sheet of the data (data=... to pick a dataset)"
    ),
    "competition init": Command(
        f"{_COMPETITION}:init",
        "competition",
        "build each phase's original model and pool, create the competition database",
        flags=f"{_COMPETITION}:no_flags",
    ),
    "submit": Command(
        f"{_COMPETITION}:submit",
        "competition",
        "queue a submission: submit --team T FILE.py (prints its id)",
        flags=f"{_COMPETITION}:submit_flags",
    ),
    "worker": Command(
        f"{_COMPETITION}:worker",
        "competition",
        "score queued submissions on every phase until the queue is empty (--follow: keep waiting)",
        flags=f"{_COMPETITION}:worker_flags",
    ),
    "leaderboard": Command(
        f"{_COMPETITION}:leaderboard",
        "competition",
        "print the leaderboard (--html PATH: also write a static page)",
        flags=f"{_COMPETITION}:leaderboard_flags",
    ),
    "competition finalize": Command(
        f"{_COMPETITION}:finalize",
        "competition",
        "close the competition and reveal the final ranking (with competition.finalize.top_k: leaders re-scored first)",
        flags=f"{_COMPETITION}:no_flags",
    ),
    "competition bundle": Command(
        f"{_COMPETITION}:bundle",
        "competition",
        "write a Codabench competition bundle (--out ZIP)",
        flags=f"{_COMPETITION}:bundle_flags",
    ),
    "stability": Command(
        "challenge.commands.stability:run",
        "stability",
        "rankings across splits: stability RUN... or a sweep folder",
        flags="challenge.commands.stability:flags",
    ),
    "tune": Command(
        "challenge.commands.tune:trial",
        "tune",
        "search a file's PARAMS with Optuna on a tuning split; writes best.json (tune.trials=N)",
        positional="submission",
        builds_model=True,
        prepare="challenge.commands.tune:prepare",
    ),
    "compare": Command(
        "challenge.commands.compare:run",
        "compare",
        "paired comparison of two results on one pool: compare A/result.json B/result.json",
        flags="challenge.commands.compare:flags",
    ),
}
# Hydra's own options a command with flags passes through untouched.
_HYDRA_FLAGS = {"-m", "--multirun", "--cfg", "-c", "--resolve", "--info", "-i", "--package", "-p"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    name, rest = _match_command(argv)
    if name is None:
        return _fail(f"unknown command {' '.join(argv[:2])!r}; run `challenge --help` for the list")
    cmd = COMMANDS[name]
    try:
        args, rest = parse_flags(name, cmd, rest)
        overrides = _positional_to_override(cmd, rest)
        if not any(a in {"-m", "--multirun"} for a in overrides) and not any(a.startswith("--") for a in overrides):
            cfg = check_overrides(cmd.config, overrides, cmd.builds_model)
            if cmd.prepare:
                overrides = _load(cmd.prepare)(cfg, overrides)
    except ChallengeError as e:
        return _fail(str(e))
    return run_hydra(name, cmd, overrides, args)


def usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: challenge <command> [key=value ...]   (Hydra overrides; -m for multirun)", "", "commands:"]
    lines += [f"  {n:<{width}}  {c.help}" for n, c in COMMANDS.items()]
    lines += ["", f"configs: {CONF_DIR}", "see `challenge <command> --cfg job` for the composed config"]
    return "\n".join(lines)


def _match_command(argv: list[str]) -> tuple[str | None, list[str]]:
    for n_words in (2, 1):
        name = " ".join(argv[:n_words])
        if name in COMMANDS:
            return name, argv[n_words:]
    return None, argv


class _FlagParser(argparse.ArgumentParser):
    """argparse, but a mistake is our one-line error instead of a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ChallengeError(f"{message} (see `{self.prog} --help`)")


def _is_override(arg: str) -> bool:
    return not arg.startswith("-") and "=" in arg


def parse_flags(name: str, cmd: Command, argv: list[str]) -> tuple[argparse.Namespace | None, list[str]]:
    """The command's own options, and what is left for Hydra (key=value overrides, Hydra's flags)."""
    if cmd.flags is None:
        return None, argv
    parser = _FlagParser(
        prog=f"challenge {name}",
        description=cmd.help,
        epilog="Any key=value argument is a Hydra override of the configs in conf/ (e.g. competition=my_comp).",
    )
    _load(cmd.flags)(parser)
    args, unknown = parser.parse_known_args([a for a in argv if not _is_override(a)])
    for i, arg in enumerate(unknown):
        if arg not in _HYDRA_FLAGS and not (i and unknown[i - 1] in _HYDRA_FLAGS):
            parser.error(f"unrecognized argument {arg!r}")
    return args, [a for a in argv if _is_override(a)] + unknown


def _load(target: str) -> Callable:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def _positional_to_override(cmd: Command, rest: list[str]) -> list[str]:
    if cmd.positional and rest and "=" not in rest[0] and not rest[0].startswith("-"):
        path = str(Path(rest[0]).expanduser().resolve())
        return [f"{cmd.positional}={_quote(path)}", *rest[1:]]
    return rest


def _quote(value: str) -> str:
    """Hydra's override grammar takes any string in single quotes, with \\' inside."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def check_overrides(config_name: str, overrides: list[str], check_model: bool = False) -> Any:
    """Compose once before running, so a typo is reported in one line with a suggestion; the composed config."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from challenge.reports.tracking import register_resolvers

    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name, overrides)
    except Exception as e:  # Hydra raises several types; all mean "this override does not fit"
        raise ChallengeError(_explain_override_error(config_name, overrides, e)) from None
    finally:
        GlobalHydra.instance().clear()
    missing = _missing_keys(OmegaConf.to_container(cfg, resolve=False))  # unresolved: ${hydra:...} has no runtime yet
    if missing:  # a required value left at ??? (data.root, the submission): say so before any import
        raise ChallengeError(_required(missing[0]))
    from challenge.checks import check_values

    check_values(cfg)  # a wrong type or range (pool.size=abc, scorer.threads=0): one line, not a traceback later
    _check_params(cfg)
    name = OmegaConf.select(cfg, "model.net.name", default=None)
    if check_model and isinstance(name, str):  # before the run imports Lightning: a typo is told in half the time
        from challenge.training.net import check_model_name

        check_model_name(name)
    return cfg


def _check_params(cfg: Any) -> None:
    """+params names and types against the file's PARAMS, read from its source: a typo costs no torch import."""
    from omegaconf import OmegaConf

    submission = OmegaConf.select(cfg, "submission", default=None, throw_on_missing=False)
    if (
        not isinstance(submission, str)
        or not (cfg.get("params") or cfg.get("params_file"))
        or not Path(submission).is_file()
    ):
        return
    from challenge.scoring.params import resolve

    resolve(Path(submission), cfg.get("params"), cfg.get("params_file"))


def _explain_override_error(config_name: str, overrides: list[str], err: Exception) -> str:
    text = " ".join(str(err).split()).split(" Config search path")[0]
    for ov in overrides:
        key = ov.split("=", 1)[0].lstrip("+~")
        if key and key in text:
            hint = _suggest(config_name, key) if "Could not override" in text else ""
            return f"bad override {ov!r}: {text}{hint}"
    return f"bad configuration: {text}"


def _suggest(config_name: str, key: str) -> str:
    """'did you mean' from the keys and config groups the composed config really has."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name)
    keys = _flat_keys(OmegaConf.to_container(cfg, resolve=False))
    keys += [p.name for p in CONF_DIR.iterdir() if p.is_dir()]
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else " (prefix with + to add a new key)"


def _missing_keys(d: Any, prefix: str = "") -> list[str]:
    if isinstance(d, dict):
        return [k for key, v in d.items() for k in _missing_keys(v, f"{prefix}{key}.")]
    return [prefix[:-1]] if d == "???" else []


def _flat_keys(d: Any, prefix: str = "") -> list[str]:
    if not isinstance(d, dict):
        return []
    out = []
    for k, v in d.items():
        out.append(f"{prefix}{k}")
        out += _flat_keys(v, f"{prefix}{k}.")
    return out


def run_hydra(name: str, cmd: Command, overrides: list[str], args: argparse.Namespace | None = None) -> int:
    import hydra

    from challenge.reports.tracking import register_resolvers

    register_resolvers()
    task: Callable = _load(cmd.target)

    def guarded(cfg: Any) -> Any:
        try:
            return task(cfg) if args is None else task(cfg, args)
        except Exception as e:
            user_error = _user_error(e)
            if user_error is None:
                raise
            sys.exit(_fail(str(user_error)))

    sys.argv = [f"challenge {name}", *overrides]
    hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=cmd.config)(guarded)()
    return 0


def _user_error(e: BaseException | None) -> ChallengeError | None:
    """Our user-facing error, even when Hydra's instantiate wrapped it; a required key left at
    `???` (e.g. data.root) is one too."""
    from omegaconf.errors import MissingMandatoryValue

    while e is not None:
        if isinstance(e, ChallengeError):
            return e
        if isinstance(e, MissingMandatoryValue):
            return ChallengeError(_required(e.full_key))
        e = e.__cause__
    return None


def _required(key: str) -> str:
    """A value left at ???, said as the fix: the positional argument it is, or the override to add."""
    for name, cmd in COMMANDS.items():
        if cmd.positional == key:
            return f"name the {key} file: challenge {name} path/to/{key}.py"
    return f"{key} is required: add {key}=... to the command"


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
