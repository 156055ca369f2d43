"""A submission's hyperparameters: the `PARAMS` dict it declares, and the values a scoring uses.

A file declares `PARAMS = {"lr": 0.01, ...}` at module level and reads `PARAMS["lr"]` inside
`unlearning()`; `challenge score FILE +params.lr=0.02` (or `params_file=best.json`, as written by
`challenge tune`) changes them. The declaration is read from the source, never by running it (the
scorer runs no participant code), so a typo in a name is refused in one line before anything is
staged. Only the values that differ from the file's own go to the child, which updates the dict in
place after the import, and into the key of the kept runs: the same file scored with its own
values keeps its runs, and every other set of values gets runs of its own. `SEARCH`, beside it,
is the search space `challenge tune` hands to Optuna (Hydra's optuna-sweeper grammar).
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from challenge.errors import ChallengeError

_LITERALS = (bool, int, float, str, type(None), list, tuple)


@dataclass(frozen=True)
class Params:
    """The values a scoring uses: all of the file's, and which of them were changed (and from where)."""

    values: dict[str, Any] = field(default_factory=dict)
    changed: dict[str, Any] = field(default_factory=dict)
    file: str | None = None  # the params_file the changes came from, if any

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values, "changed": self.changed, "file": self.file}


def declared(source: str | bytes, name: str = "PARAMS") -> dict[str, Any] | None:
    """The file's module-level `name = {...}` as plain values; None when it has none that is a literal dict."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    found = None
    for node in tree.body:
        target = (
            node.target
            if isinstance(node, ast.AnnAssign)
            else (node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        )
        if isinstance(target, ast.Name) and target.id == name and node.value is not None:
            try:
                found = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                found = None
    if not isinstance(found, dict) or not all(isinstance(k, str) for k in found):
        return None
    return {k: list(v) if isinstance(v, tuple) else v for k, v in found.items()}


def resolve(submission: Path, overrides: Mapping[str, Any] | None, params_file: str | None) -> Params:
    """The file's PARAMS, then params_file's values, then the +params overrides; the user's faults raise.

    A file without PARAMS is fine as long as nothing is asked of it (every Kaggle-era file).
    """
    overrides = dict(overrides or {})
    from_file = read_params_file(Path(params_file).expanduser()) if params_file else {}
    if not overrides and not from_file:
        return Params(declared(submission.read_bytes()) or {})
    defaults = declared(submission.read_bytes())
    asked = ", ".join(f"params.{k}" for k in [*from_file, *overrides])
    if defaults is None:
        raise ChallengeError(
            f"{submission.name} declares no PARAMS dict, so {asked} cannot be set: "
            'add a module-level PARAMS = {"name": value, ...} and read PARAMS["name"] in unlearning()'
        )
    values = dict(defaults)
    for source, given in ((f"params_file {params_file}", from_file), ("+params", overrides)):
        for key, value in given.items():
            if key not in defaults:
                known = ", ".join(sorted(defaults)) or "none"
                raise ChallengeError(f"unknown parameter {key!r} ({source}) for {submission.name}: it declares {known}")
            values[key] = coerce(key, value, defaults[key])
    changed = {k: v for k, v in values.items() if v != defaults[k]}
    return Params(values, changed, str(params_file) if from_file else None)


def coerce(key: str, value: Any, default: Any) -> Any:
    """`value` in the type of the file's own value, so that 0.1 and +params.lr=0.1 are the same run."""
    value = _plain(value)
    if default is None:
        return value
    kind = type(default)
    if kind is bool or isinstance(value, bool):  # True is an int to Python, never to a hyperparameter
        ok = kind is bool and isinstance(value, bool)
    elif kind is float and isinstance(value, int):
        value, ok = float(value), True
    elif kind is int and isinstance(value, float) and value.is_integer():
        value, ok = int(value), True
    elif kind in (list, tuple):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ChallengeError(
            f"params.{key}={value!r} is {_a(type(value))}, but the file's value {default!r} is {_a(kind)}: give "
            f"{_a(kind)}"
        )
    return list(value) if isinstance(value, tuple) else value


def _a(kind: type) -> str:
    return ("an " if kind.__name__[0] in "aeiou" else "a ") + kind.__name__


def _plain(value: Any) -> Any:
    """OmegaConf containers (a Hydra list override) as plain Python."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if not isinstance(value, _LITERALS):
        raise ChallengeError(
            f"a parameter value must be a number, a bool, a string or a list, not {_a(type(value))} ({value!r})"
        )
    return value


def read_params_file(path: Path) -> dict[str, Any]:
    """`challenge tune`'s best.json ({"params": {...}, ...}) or a plain {"name": value} object."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ChallengeError(
            f"no params file at {path}: give the best.json that `challenge tune` wrote, or a JSON object of name: value"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ChallengeError(
            f"params file {path} is not readable JSON ({type(e).__name__}: {e}): give a JSON object of name: value"
        ) from None
    params = data.get("params") if isinstance(data, dict) and isinstance(data.get("params"), dict) else data
    if not isinstance(params, dict) or not params:
        raise ChallengeError(
            f"params file {path} holds no parameters: give a JSON object of name: value, or tune's best.json"
        )
    return params


def search_space(source: str | bytes, path: Path) -> dict[str, str]:
    """The file's SEARCH, checked against its PARAMS: name -> Optuna-sweeper expression."""
    params, space = declared(source), declared(source, "SEARCH")
    if params is None or space is None:
        raise ChallengeError(
            f"{path.name} needs module-level PARAMS and SEARCH dicts to be tuned: "
            'e.g. PARAMS = {"lr": 0.01} and SEARCH = {"lr": "tag(log, interval(0.001, 0.1))"}'
        )
    unknown = sorted(set(space) - set(params))
    if unknown:
        raise ChallengeError(
            f"SEARCH in {path.name} names {', '.join(unknown)}, which PARAMS does not declare: it declares "
            f"{', '.join(sorted(params))}"
        )
    bad = [k for k, v in space.items() if not isinstance(v, str)]
    if bad or not space:
        raise ChallengeError(
            f'SEARCH in {path.name} must map parameter names to sweeper expressions such as "interval(0.1, 1.0)" (not '
            f"{bad or 'nothing'})"
        )
    return space
