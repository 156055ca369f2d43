"""Rankings across forget sets: would the benchmark say the same on another split?

`challenge baseline -m data.split.seed=0,1,2` scores every baseline on several splits, each with
its own original model and pool; each job leaves a `leaderboard.json` in its run folder. When the
multirun ends, `StabilityCallback` (conf/baseline.yaml, any launcher: Hydra calls it in the
launching process) reads them and writes `stability.json` and `stability.html` in the sweep folder,
and prints the table: each method's rank and F per split, mean ± spread, and Kendall's τ between
every two splits' rankings, over all methods and over the top five. `stability_of` does the same
for run folders gathered by hand (`challenge baseline` runs started one by one).

τ is Kendall's τ-b on the final scores (the leaderboard's own order), so equal scores count as
ties rather than as an order the sort happened to pick.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from hydra.experimental.callback import Callback

from challenge.errors import ChallengeError
from challenge.files import write_atomic, write_json
from challenge.reports.over_splits import format_over_splits, over_splits
from challenge.reports.scenarios import format_scenarios, scenario_table, write_scenarios

if TYPE_CHECKING:
    from challenge.scoring.row import LeaderboardRow

LEADERBOARD_FILE = "leaderboard.json"  # what `challenge baseline` leaves in its run folder
TOP = 5  # the goal's "top five": the methods with the best mean rank


# -- one split's leaderboard ---------------------------------------------------------------------------
def split_record(
    overrides: list[str], split_seed: int, fingerprint: str, rows: list[LeaderboardRow], total_seconds: float
) -> dict[str, Any]:
    """What one `challenge baseline` run leaves for the stability table: its ranked rows, and where they came from."""
    keep = ("name", "status", "final_score", "forget_quality", "f_ci", "f_of_ceiling", "retain_ratio", "test_ratio")
    ceiling = next((asdict(r.ceiling) for r in rows if r.ceiling), None)
    return {
        "overrides": overrides,
        "split_seed": split_seed,
        "pool": fingerprint,
        "total_seconds": total_seconds,
        "ceiling": ceiling,
        "rows": [{k: getattr(r, k) for k in keep} for r in rows],
    }


def read_splits(folders: list[Path]) -> list[dict[str, Any]]:
    """The runs' records, each labelled by what its command line changed from the others' (a sweep's
    own parameter, e.g. `data.split.seed=1`), or by its split seed where nothing tells them apart."""
    missing = [str(f) for f in folders if not (f / LEADERBOARD_FILE).is_file()]
    if missing:
        raise ChallengeError(
            f"no {LEADERBOARD_FILE} in {', '.join(missing)}: each folder must be a finished `challenge baseline` run"
        )
    splits = [json.loads((f / LEADERBOARD_FILE).read_text()) for f in folders]
    common = set.intersection(*(set(s.get("overrides") or []) for s in splits)) if splits else set()
    for s in splits:
        own = [o for o in s.get("overrides") or [] if o not in common]
        s["label"] = ",".join(own) or f"split seed {s.get('split_seed')}"
    labels = [s["label"] for s in splits]
    if len(set(labels)) < len(labels):  # the same split twice (or runs told apart by nothing): number them
        for i, s in enumerate(splits):
            s["label"] = f"{s['label']} #{i}"
    return splits


# -- the statistics ------------------------------------------------------------------------------------
def kendall_tau(a: list[float], b: list[float]) -> float | None:
    """Kendall's τ-b of two score lists over the same items (None with fewer than two, or no order at all)."""
    concordant = discordant = ties_a = ties_b = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
        if da == 0 and db == 0:
            continue
        if da == 0:
            ties_a += 1
        elif db == 0:
            ties_b += 1
        elif da == db:
            concordant += 1
        else:
            discordant += 1
    ordered = concordant + discordant
    denominator = math.sqrt((ordered + ties_b) * (ordered + ties_a))
    return (concordant - discordant) / denominator if denominator else None


def _scored(split: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> row with its 1-based rank, for the rows this split scored (the leaderboard's order)."""
    rows = [r for r in split["rows"] if r.get("final_score") is not None]
    return {r["name"]: {**r, "rank": i} for i, r in enumerate(rows, 1)}


def stability(splits: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method: rank, F and final score on each split, their mean and spread; the leaderboard over the splits
    (challenge.reports.over_splits); τ between splits."""
    if len(splits) < 2:
        raise ChallengeError(
            f"a stability table needs at least two splits, got {len(splits)}: run `challenge baseline -m "
            "data.split.seed=0,1,2`"
        )
    scored = [_scored(s) for s in splits]
    names = sorted({n for s in scored for n in s} | {r["name"] for s in splits for r in s["rows"]})
    methods = [_method(name, scored) for name in names]
    methods.sort(key=lambda m: (m["rank_mean"] is None, m["rank_mean"] or 0.0, m["name"]))
    top = [m["name"] for m in methods if m["rank_mean"] is not None][:TOP]
    return {
        "splits": [
            {
                "label": s["label"],
                "pool": s["pool"],
                "ceiling_f": (s.get("ceiling") or {}).get("forget_quality"),
                "total_seconds": s.get("total_seconds"),
            }
            for s in splits
        ],
        "methods": methods,
        "over_splits": over_splits(
            {m["name"]: [p and p["final_score"] for p in m["per_split"]] for m in methods},
            {m["name"]: [p and p.get("final_se") for p in m["per_split"]] for m in methods},
        ),
        "tau": _taus(splits, scored, [m["name"] for m in methods]),
        "tau_top": _taus(splits, scored, top),
        "top": top,
    }


def _method(name: str, scored: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    per = [s.get(name) for s in scored]
    ranks = [p["rank"] for p in per if p]
    f = [p["forget_quality"] for p in per if p]
    final = [p["final_score"] for p in per if p]
    return {
        "name": name,
        "per_split": [
            {
                "rank": p["rank"],
                "forget_quality": p["forget_quality"],
                "final_score": p["final_score"],
                "final_se": final_se(p),
            }
            if p
            else None
            for p in per
        ],
        "rank_mean": float(np.mean(ranks)) if ranks else None,
        "rank_range": [min(ranks), max(ranks)] if ranks else None,
        "f_mean": float(np.mean(f)) if f else None,
        "f_sd": _sd(f),
        "final_mean": float(np.mean(final)) if final else None,
        "final_sd": _sd(final),
    }


def final_se(row: dict[str, Any]) -> float | None:
    """A final score's standard error on its split, from F's interval scaled as the score is (F × the ratios)."""
    f, ci, final = row.get("forget_quality"), row.get("f_ci"), row.get("final_score")
    if not ci or not f or final is None:
        return None
    return (ci[1] - ci[0]) / (2 * 1.96) * final / f


def _sd(xs: list[float]) -> float | None:
    return float(np.std(xs, ddof=1)) if len(xs) > 1 else None


def _taus(splits: list[dict[str, Any]], scored: list[dict[str, dict[str, Any]]], names: list[str]) -> dict[str, Any]:
    """τ-b between every two splits over the named methods both scored, and their mean."""
    pairs = []
    for i, j in itertools.combinations(range(len(splits)), 2):
        common = [n for n in names if n in scored[i] and n in scored[j]]
        tau = kendall_tau([scored[i][n]["final_score"] for n in common], [scored[j][n]["final_score"] for n in common])
        pairs.append({"a": splits[i]["label"], "b": splits[j]["label"], "tau": tau, "n_methods": len(common)})
    taus = [p["tau"] for p in pairs if p["tau"] is not None]
    return {"pairs": pairs, "mean": float(np.mean(taus)) if taus else None, "min": min(taus) if taus else None}


# -- output --------------------------------------------------------------------------------------------
def _num(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def stability_table(st: dict[str, Any]) -> str:
    """Rank and F per split, then the means; the τ lines under it."""
    labels = [s["label"] for s in st["splits"]]
    width = max(len(m["name"]) for m in st["methods"])
    cols = [max(len(label), 12) for label in labels]
    head = (
        f"{'method':<{width}}  "
        + "  ".join(f"{label:>{c}}" for label, c in zip(labels, cols))
        + "   F mean ± sd     final mean ± sd  rank mean (range)"
    )
    lines = [head, f"{'':<{width}}  " + "  ".join(f"{'rank   F':>{c}}" for c in cols)]
    for m in st["methods"]:
        cells = [f"{p['rank']:>2}  {p['forget_quality']:.3f}" if p else "—" for p in m["per_split"]]
        rng = f"{m['rank_mean']:.1f} ({m['rank_range'][0]}–{m['rank_range'][1]})" if m["rank_mean"] is not None else "—"
        lines.append(
            f"{m['name']:<{width}}  "
            + "  ".join(f"{c:>{w}}" for c, w in zip(cells, cols))
            + f"   {_num(m['f_mean'])} ± {_num(m['f_sd'])}   {_num(m['final_mean'])} ± {_num(m['final_sd'])}  {rng}"
        )
    ceilings = [s["ceiling_f"] for s in st["splits"]]
    if any(c is not None for c in ceilings):
        lines.append(f"{'(ceiling F)':<{width}}  " + "  ".join(f"{_num(c):>{w}}" for c, w in zip(ceilings, cols)))
    lines += [
        "",
        format_over_splits(st["over_splits"], len(st["splits"])),
        "",
        _tau_line("all methods", st["tau"]),
        _tau_line(f"top {len(st['top'])} ({', '.join(st['top'])})", st["tau_top"]),
    ]
    return "\n".join(lines)


def _tau_line(what: str, tau: dict[str, Any]) -> str:
    pairs = ", ".join(f"{p['a']} vs {p['b']} {_num(p['tau'], 2)}" for p in tau["pairs"])
    return f"Kendall's τ, {what}: mean {_num(tau['mean'], 2)}, min {_num(tau['min'], 2)} ({pairs})"


def stability_plot(st: dict[str, Any]) -> str:
    """Rank per split (a bump chart: crossing lines are swapped places) beside F per split with its mean."""
    from challenge.reports.leaderboard import _figure, _png

    fig = _figure(10.0, 3.6)
    ranks, fs = fig.subplots(1, 2)
    x = np.arange(len(st["splits"]))
    for m in st["methods"]:
        ys = [p["rank"] if p else np.nan for p in m["per_split"]]
        ranks.plot(x, ys, marker="o", label=m["name"])
        fs.plot(x, [p["forget_quality"] if p else np.nan for p in m["per_split"]], marker="o")
    labels = [s["label"] for s in st["splits"]]
    for ax in (ranks, fs):
        ax.set_xticks(x, labels, rotation=15)
    ranks.invert_yaxis()
    ranks.set_ylabel("rank (1 = best final score)")
    ranks.set_title("Rank per split")
    fs.set_ylabel("forget quality F")
    fs.set_title("F per split")
    ranks.legend(fontsize=7, loc="center left", bbox_to_anchor=(2.25, 0.5))
    return _png(fig)


def write_stability(st: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """stability.json and stability.html (the table as text, and the plot) in `folder`."""
    import html

    from challenge.reports.leaderboard import _STYLE, _img

    write_json(folder / "stability.json", st, indent=2)
    page = folder / "stability.html"
    title = f"Stability of the baselines' ranking over {len(st['splits'])} splits"
    write_atomic(
        page,
        "\n".join(
            [
                '<!DOCTYPE html><html lang="en"><head><meta '
                f'charset="utf-8"><title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>',
                f"<h1>{html.escape(title)}</h1>",
                (
                    '<p class="note">Each split has other forget identities, its own original model and its own pool. '
                    "Rank by final score; Kendall's τ-b between two splits' final scores (1: the same order, 0: "
                    "unrelated).</p>"
                ),
                f'<pre id="stability">{html.escape(stability_table(st))}</pre>',
                _img(stability_plot(st), "rank and forget quality of each method on each split"),
                "</body></html>",
            ]
        ),
    )
    return folder / "stability.json", page


def stability_of(folders: list[Path], out: Path) -> dict[str, Any]:
    """The table for finished `challenge baseline` run folders, written to `out` and printed."""
    splits = read_splits(folders)
    st = stability(splits)
    write_stability(st, out)
    print(stability_table(st))
    print(f"\nstability: {out / 'stability.json'}\nplot:      {out / 'stability.html'}")
    table = scenario_table(splits)  # the runs differ in forget scenario: each method per scenario
    if table is not None:
        data, page = write_scenarios(table, out)
        print(f"\n{format_scenarios(table)}\nscenarios: {data}\npage:      {page}")
    return st


def job_folders(sweep: Path) -> list[Path]:
    """A sweep's finished job folders (0, 1, ..., 10: in job order, not text order)."""
    return sorted((p.parent for p in sweep.glob(f"*/{LEADERBOARD_FILE}")), key=lambda p: (len(p.name), p.name))


class StabilityCallback(Callback):
    """At the end of a `challenge baseline` multirun, the stability table over its jobs' folders."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self.start = time.perf_counter()

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep = Path(str(config.hydra.sweep.dir))
        folders = job_folders(sweep)
        if len(folders) < 2:  # a one-job sweep (or every job failed): nothing to compare
            print(f"stability: {len(folders)} finished job(s) in {sweep}, no table (it needs two splits)")
            return
        st = stability_of(folders, sweep)
        seconds = time.perf_counter() - getattr(self, "start", time.perf_counter())
        st["multirun_seconds"] = round(seconds, 1)
        write_json(sweep / "stability.json", st, indent=2)
        print(f"multirun: {len(folders)} splits in {seconds:.0f} s")
