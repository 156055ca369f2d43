"""The commands the docs print work as printed.

A reader copies a command from README.md, docs/*.md, submissions/README.md or the `#   challenge ...`
comment of a preset (conf/experiment/*.yaml). A renamed override, a moved file or a preset whose
budget no method fits is found here, not by the reader:

- every `challenge` line of a ```bash block goes through the CLI's own parsing (command, flags, the
  positional file, Hydra overrides composed with the real configs, the value checks, +params against
  the file's PARAMS), and every file it names is in the checkout (fast);
- the documented first try (conf/experiment/tiny.yaml) runs as printed and is scored (fast);
- every other command runs, with `experiment=tiny` added where it names no preset (slow), except
  those of NOT_RUN, which need something this machine does not have.

What the docs name that a checkout cannot have is stood in for by STAND_INS and EARLIER_OUTPUTS.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf

from challenge.cli import COMMANDS, CONF_DIR, _match_command, _positional_to_override, check_overrides, parse_flags
from challenge.errors import ChallengeError
from challenge.scoring.params import declared
from tests.conftest import REPO, run_cli

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "submissions" / "README.md"]
PRESETS = sorted((REPO / "conf" / "experiment").glob("*.yaml"))
FIRST_TRY = REPO / "conf" / "experiment" / "tiny.yaml"

# The reader's own files, as the docs name them -> the file of the checkout that stands in for each.
STAND_INS = {
    "mine.py": "submissions/template.py",  # "a new method" (README, conf/experiment/tiny.yaml)
    "my.py": "submissions/template.py",
    "my_unlearning.py": "submissions/template.py",
    "submissions/my_method.py": "submissions/template.py",
    "owls.py": "submissions/template.py",  # a team's file (docs/competition.md)
    "submissions/owls_v3.py": "submissions/template.py",
}
# The reader's own configs -> the kit's that stands in: docs/competition.md says to copy demo.yaml to my_comp.yaml.
CONFIG_STAND_INS = {"competition=my_comp": "competition=demo"}
# Files that an earlier command of the same block writes (`<time>` is its run folder) -> where the slow
# test finds them in the folder the block ran in: a glob, and which of its matches (in time order).
EARLIER_OUTPUTS = {
    "outputs/tune/multiruns/<time>/best.json": ("outputs/tune/multiruns/*/best.json", -1),
    "outputs/baseline/multiruns/<time>": ("outputs/baseline/multiruns/*", -1),
    "A/result.json": ("outputs/score/runs/*/result.json", 0),  # the block's first `challenge score` ...
    "B/result.json": ("outputs/score/runs/*/result.json", 1),  # ... and its second, on the same pool
}
# Commands the slow test does not run: a word of the command, or its first two words -> why.
NOT_RUN = {
    "make baseline": "`challenge baseline` at the default preset (minutes); the README's `challenge baseline` runs",
    "make test": "this test suite",
    "make bench": "benchmarks: minutes of speed figures, no documented output",
    "make gpu-wheels": "needs a package registry and apt",
    "make gpu-check": "needs benchmarks/gpu_wheels (make gpu-wheels), and a GPU for what it is for",
    "createdb": "needs a PostgreSQL server (db-host)",
    "competition.store=postgresql://organizer@db-host:5432/comp": "needs a PostgreSQL server (db-host)",
    "hydra/launcher=submitit_slurm": "needs a SLURM cluster",
    "experiment=neurips2023": "the full 2023 setting: real faces from a local folder and a GPU",
    "data=surf": "needs the CASIA-SURF images in a local folder",
    "data=utkface": "needs the UTKFace images in a local folder",
    "data=csv": "needs a folder of face images with a CSV of labels",
}


def not_run(words: tuple[str, ...]) -> str | None:
    """Why the slow test does not run the command (NOT_RUN), or None."""
    return next((why for key, why in NOT_RUN.items() if key in words or key == " ".join(words[:2])), None)


OUTPUT_FLAGS = {"--html", "--out"}  # what follows them is written, not read
VALUE_FLAGS = OUTPUT_FLAGS | {"--team", "--bootstrap", "--seed"}


@dataclass(frozen=True)
class DocCommand:
    """One command as a reader copies it: where it is printed, and its words as the shell splits them."""

    where: str  # "README.md:27"
    words: tuple[str, ...]  # continuation lines joined, the block's $VARIABLES substituted, the comment dropped

    def __str__(self) -> str:
        return f"{self.where}: {shlex.join(self.words)}"


def bash_blocks(path: Path) -> list[tuple[int, str]]:
    """The logical lines of the file's ```bash blocks, with their first line's number."""
    lines, inside, out, pending = path.read_text().splitlines(), False, [], None
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            inside = line.strip() == "```bash"
            continue
        if not inside:
            continue
        start, text = pending or (number, "")
        text += line.rstrip().removesuffix("\\") + " "
        pending = (start, text) if line.rstrip().endswith("\\") else None
        if pending is None:
            out.append((start, text))
    return out


def preset_lines(path: Path) -> list[tuple[int, str]]:
    """The `#   challenge ...` command comments of a preset."""
    numbered = enumerate(path.read_text().splitlines(), 1)
    return [(n, m[1]) for n, line in numbered if (m := re.match(r"#\s{2,}(challenge .*)", line))]


def commands_of(path: Path) -> list[DocCommand]:
    """Every command the file prints, in order; `NAME=value` and `export NAME=value` lines set variables."""
    variables: dict[str, str] = {}
    found = []
    for number, text in preset_lines(path) if path.suffix == ".yaml" else bash_blocks(path):
        text = re.sub(r"\$(\w+)|\$\{(\w+)\}", lambda m: variables.get(m[1] or m[2], m[0]), text)
        words = shlex.split(text, comments=True)
        assignment = words[1:] if words[:1] == ["export"] else words
        if len(assignment) == 1 and re.fullmatch(r"[A-Z_]+=.*", assignment[0]):
            name, value = assignment[0].split("=", 1)
            variables[name] = value
            continue
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            found.append(DocCommand(f"{path.relative_to(REPO)}:{number}", tuple(words[:cut])))
            words = words[cut + 1 :]
    return found


ALL = [c for path in [*DOCS, *PRESETS] for c in commands_of(path)]


def names_a_path(word: str) -> bool:
    """A relative file or folder the command reads (a URL, a Hydra group, an absolute or ~ folder is not)."""
    if word.startswith(("/", "~", "-")) or "://" in word:
        return False
    return "/" in word or word.endswith((".py", ".json"))


def read_paths(words: tuple[str, ...]) -> list[str]:
    """The files a command reads: its positional arguments and path-valued overrides (not what --out writes)."""
    paths = []
    for i, word in enumerate(words[1:], 1):
        key, eq, value = word.partition("=")
        if words[i - 1] in OUTPUT_FLAGS or (not eq and words[i - 1] in VALUE_FLAGS):
            continue
        candidate = value if eq and "/" not in key else (word if not eq else "")
        if candidate and names_a_path(candidate):
            paths.append(candidate)
    return paths


def path_problem(path: str) -> str | None:
    """None when the checkout has the file (or its stand-in), or an earlier command writes it."""
    real = STAND_INS.get(path, path)
    if path in EARLIER_OUTPUTS or (REPO / real).exists():
        return None
    return f"names {path}, which is not in the checkout" + (f" (nor its stand-in {real})" if real != path else "")


def first_values(overrides: list[str]) -> list[str]:
    """A sweep (`-m a=0,1,2`, `range(64)`) as its first job sees it; the other jobs compose the same keys."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return overrides  # as given: the CLI's own check says what is wrong with them
    return [
        f"{o.get_key_element()}={next(o.sweep_string_iterator())}" if o.is_sweep_override() else o.input_line
        for o in parsed
    ]


def stood_in(words: tuple[str, ...], scratch: Path) -> list[str]:
    """The words with the reader's files and configs replaced; a tuned best.json holds the file's own PARAMS
    (what `challenge tune` starts from), written to `scratch`."""
    out = []
    for word in words:
        key, eq, value = word.partition("=")
        if key == "params_file" and value in EARLIER_OUTPUTS:
            submission = next(w for w in words if w.endswith(".py"))
            best = scratch / "best.json"
            source = (REPO / STAND_INS.get(submission, submission)).read_bytes()
            best.write_text(json.dumps({"params": declared(source)}))
            word = f"params_file={best}"
        out.append(CONFIG_STAND_INS.get(word, STAND_INS.get(word, word)))
    return out


def compose_problem(command: DocCommand, scratch: Path) -> str | None:
    """What `challenge` would refuse in the command before running it (None: nothing), as main() checks it."""
    name, rest = _match_command(stood_in(command.words, scratch)[1:])
    if name is None:
        return f"{command.words[1]!r} is not a challenge command"
    cmd = COMMANDS[name]
    try:
        _, rest = parse_flags(name, cmd, rest)
        overrides = [o for o in _positional_to_override(cmd, rest) if o not in ("-m", "--multirun")]
        check_overrides(cmd.config, first_values(overrides), cmd.builds_model)
    except ChallengeError as e:
        return str(e)
    return None


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-zA-Z_-]+):", (REPO / "Makefile").read_text(), re.MULTILINE))


def test_the_commands_are_found_as_a_shell_reads_them() -> None:
    """A silent extractor would let every check below pass: `&&` splits, `\\` joins, $VARIABLES are
    substituted, comments go; and NOT_RUN names no command the docs no longer print."""
    first_try = [c.words for c in commands_of(FIRST_TRY)]
    assert first_try == [("challenge", "pool", "experiment=tiny"), ("challenge", "score", "mine.py", "experiment=tiny")]
    words = [c.words for c in ALL]
    assert ("challenge", "pool", "pool.size=32") in words  # its comment dropped
    joined = ("challenge", "pool", "experiment=neurips2023", "hydra.launcher.timeout_min=240")
    assert any(w[:3] == joined[:3] and w[-1] == joined[-1] for w in words)  # three lines, one command
    store = "competition.store=postgresql://organizer@db-host:5432/comp"  # $STORE, set on the line before
    assert ("challenge", "leaderboard", "competition=my_comp", store) in words
    assert sum(w[0] == "challenge" for w in words) >= 30
    stale = [key for key in NOT_RUN if not any(key in w or key == " ".join(w[:2]) for w in words)]
    assert stale == [], f"NOT_RUN names commands the docs no longer print: {stale}"


def test_a_broken_command_is_told_with_its_doc_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks below are not vacuous: a misspelt override and a missing file are each one problem."""
    monkeypatch.chdir(REPO)
    typo = DocCommand("README.md:99", ("challenge", "score", "submissions/template.py", "scorer.budget_fractoin=5"))
    assert compose_problem(typo, tmp_path) == (
        "bad override 'scorer.budget_fractoin=5': Could not override 'scorer.budget_fractoin'. "
        "To append to your config use +scorer.budget_fractoin=5 (did you mean 'scorer.budget_fraction'?)"
    )
    assert str(typo) == "README.md:99: challenge score submissions/template.py scorer.budget_fractoin=5"
    paths = read_paths(("challenge", "score", "baselines/nope.py", "params_file=A/result.json", "data.root=/data/x"))
    assert [path_problem(p) for p in paths] == ["names baselines/nope.py, which is not in the checkout", None]
    unknown = DocCommand("x.md:1", ("challenge", "scroe", "x.py"))
    assert compose_problem(unknown, tmp_path) == "'scroe' is not a challenge command"


def test_every_documented_command_composes_as_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each `challenge` line through the CLI's checks with the real configs; each file it reads exists."""
    monkeypatch.chdir(REPO)  # a printed path is relative to the checkout
    problems = []
    for command in ALL:
        if command.words[0] == "make":
            missing = [t for t in command.words[1:] if t not in make_targets()]
            problems += [f"{command}: no make target {t}" for t in missing]
            continue
        if command.words[0] != "challenge":
            if not_run(command.words) is None:
                problems.append(f"{command}: not a command this test knows (add it to NOT_RUN with the reason)")
            continue
        problems += [f"{command}: {p}" for p in map(path_problem, read_paths(command.words)) if p]
        problem = compose_problem(command, tmp_path)
        if problem:
            problems.append(f"{command}: {problem}")
    assert problems == [], "\n".join(problems)


def copy_inputs(words: tuple[str, ...], folder: Path) -> None:
    """The files the command reads, at the paths it prints, in the folder it runs in (the checkout's, or STAND_INS)."""
    for path in read_paths(words):
        if path not in EARLIER_OUTPUTS and not (folder / path).exists():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / STAND_INS.get(path, path), folder / path)


@functools.cache
def takes_a_preset(config: str) -> bool:
    """Whether the command's config has the experiment group (compare, stability and data preview have none)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return "experiment" in compose(config, return_hydra_config=True).hydra.runtime.choices
    finally:
        GlobalHydra.instance().clear()


def as_run(command: DocCommand, folder: Path) -> list[str]:
    """The arguments the slow test runs: earlier outputs found, experiment=tiny where no preset is named."""
    args = []
    for word in command.words[1:]:
        key, eq, value = word.partition("=")
        target = value if eq else word
        if target in EARLIER_OUTPUTS:
            pattern, index = EARLIER_OUTPUTS[target]
            matches = sorted(folder.glob(pattern))
            assert len(matches) > index, f"{command}: no {pattern} in {folder} from an earlier command"
            found = str(matches[index])
            word = f"{key}={found}" if eq else found
        args.append(CONFIG_STAND_INS.get(word, word))  # the reader's files are copied in at the printed path
    name, _ = _match_command(args)
    if any(a.startswith("experiment=") for a in args) or not takes_a_preset(COMMANDS[name].config):
        return args
    return [*args, "experiment=tiny"]


def run_printed(command: DocCommand, folder: Path) -> subprocess.CompletedProcess:
    """The command run by the console script in `folder`, with the session's CHALLENGE_CACHE_DIR; it must succeed."""
    copy_inputs(command.words, folder)
    r = run_cli(*as_run(command, folder), cwd=folder, timeout=3600)
    assert r.returncode == 0, f"{command} (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def result_of(output: str) -> dict:
    """The result.json a `challenge score` names in its last line."""
    paths = re.findall(r"^result: (.+)$", output, re.MULTILINE)
    assert paths, output
    return json.loads(Path(paths[-1]).read_text())


@pytest.mark.slow
def test_the_first_try_runs_as_printed_and_is_scored(tmp_path: Path) -> None:
    """conf/experiment/tiny.yaml's command, with mine.py the template, in a fresh folder: the tiny budget
    fits one epoch of fine-tuning with the headroom `challenge tune` asks of a tuned method (tune.budget_share).
    It trains a pool, so it runs in `make test-all`; `make test` checks the same budget on a stand-in pool
    (tests/test_score.py, test_a_priced_result_shows_the_calibration_the_rule_and_each_runs_cost)."""
    pool, score = (c for c in commands_of(FIRST_TRY) if c.words[0] == "challenge")
    assert (pool.words[1], score.words[1]) == ("pool", "score"), (pool, score)
    run_printed(pool, tmp_path)
    result = result_of(run_printed(score, tmp_path).stdout)
    assert result["status"] == "scored", result["message"]
    assert Path(result["submission"]["path"]).read_bytes() == (REPO / "submissions" / "template.py").read_bytes()
    headroom = OmegaConf.load(REPO / "conf" / "tune.yaml").tune.budget_share
    assert max(result["budget"]["run_fraction"]) < headroom, result["budget"]


def runnable() -> dict[str, list[DocCommand]]:
    """Per doc file, the `challenge` commands the slow test runs, in order (the first try is the fast test's)."""
    runs: dict[str, list[DocCommand]] = {}
    for command in ALL:
        first_try = command.where.startswith(f"{FIRST_TRY.relative_to(REPO)}:")
        if command.words[0] == "challenge" and not_run(command.words) is None and not first_try:
            runs.setdefault(command.where.split(":")[0], []).append(command)
    return runs


RUN = runnable()


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)  # README.md's commands: a 32-model pool, 19 methods, 20 tuning trials, 3 splits
@pytest.mark.parametrize("doc", RUN)
def test_every_other_documented_command_runs(doc: str, tmp_path: Path) -> None:
    """The doc's commands in order in one folder (a later one reads what an earlier one wrote), at the tiny preset."""
    for command in RUN[doc]:
        run_printed(command, tmp_path)
