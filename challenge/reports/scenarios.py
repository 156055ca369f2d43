"""Methods across forget scenarios: `challenge baseline -m forget=identities,random,class,subgroup`.

Each job of such a multirun scores every baseline on one scenario (its own split, original and pool)
and leaves its scenario in `leaderboard.json` (`scenario_record`). When the multirun ends, the
stability callback (challenge.reports.stability) also writes `scenarios.json` and `scenarios.html`
(beside `stability.html`) in the sweep folder and prints one table: per method and scenario, the final
score, F and the scenario's own figure (result.json's `scenario` headline: the forget set's accuracy,
or the focus images', e.g. the forgotten class's test images), with the retrained pool's figure and
the scenario's ceiling F (retrained against retrained) in the header, since that is what a method
should come near.

A sweep of one scenario over one of its numeric settings is also drawn as a *curve*: the headline figure
against that setting, one line per method, the retrained pool's and the original's beside them (and a
corrective scenario's clean model's, trained without the manipulation). For
corrective unlearning (`forget=corrective forget.identified=0.1,0.5,1.0`) that is the question Goel et al.
ask: how much of the manipulated data must be found before forgetting it (or retraining without it)
undoes the harm.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from challenge.files import write_atomic, write_json

if TYPE_CHECKING:
    from challenge.scoring.result import Result

SCENARIOS_FILE = "scenarios.json"
SCENARIOS_PAGE = "scenarios.html"


def scenario_record(results: dict[str, Result]) -> dict[str, Any] | None:
    """One baseline run's scenario and each method's headline figure (None for a method not scored)."""
    known = next((r.scenario for r in results.values() if r.scenario is not None), None)
    if known is None:
        return None
    figure = known.figures[known.headline]
    methods = {}
    for name, r in results.items():
        own = r.scenario.figures.get(known.headline) if r.scenario is not None and r.scored else None
        methods[name] = own.unlearned if own is not None else None
    return {
        "name": known.name,
        "settings": known.settings,
        "headline": known.headline,
        "focus": known.focus,
        "retrained": figure.retrained,
        "original": figure.original,
        "clean": figure.clean,  # a corrective scenario's clean model (None elsewhere)
        "methods": methods,
    }


def scenario_table(splits: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Per method, per scenario: final score, F, the headline figure; None unless the runs differ in scenario."""
    scenarios = [s.get("scenario") for s in splits]
    if any(sc is None for sc in scenarios) or len({_label(sc) for sc in scenarios}) < 2:
        return None
    names = sorted({r["name"] for s in splits for r in s["rows"]})
    columns = [
        {k: sc.get(k) for k in ("name", "settings", "headline", "focus", "retrained", "original", "clean")}
        for sc in scenarios
    ]
    for column, label, split in zip(columns, _labels(scenarios), splits):
        column["label"] = label
        column["ceiling_f"] = (split.get("ceiling") or {}).get("forget_quality")
    methods = []
    for name in names:
        cells = []
        for s, sc in zip(splits, scenarios):
            row = next((r for r in s["rows"] if r["name"] == name), None) or {}
            cells.append(
                {
                    "final_score": row.get("final_score"),
                    "forget_quality": row.get("forget_quality"),
                    sc["headline"]: sc["methods"].get(name),
                }
            )
        methods.append({"name": name, "per_scenario": cells})
    table = {"scenarios": columns, "methods": methods}
    return table | {"curve": scenario_curve(table)}


def scenario_curve(table: dict[str, Any]) -> dict[str, Any] | None:
    """The headline figure against the one numeric setting the runs differ in, ascending; None unless the runs
    are one scenario swept over one such setting."""
    cols = table["scenarios"]
    if len({c["name"] for c in cols}) != 1 or len({c["headline"] for c in cols}) != 1:
        return None
    varying = _varying([c["settings"] for c in cols])
    xs = [c["settings"].get(varying[0]) for c in cols] if len(varying) == 1 else []
    if not xs or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs):
        return None
    order = sorted(range(len(cols)), key=xs.__getitem__)
    headline = cols[0]["headline"]
    return {
        "scenario": cols[0]["name"],
        "key": varying[0],
        "headline": headline,
        "x": [xs[i] for i in order],
        "retrained": [cols[i]["retrained"] for i in order],
        "original": [cols[i]["original"] for i in order],
        "clean": [cols[i]["clean"] for i in order],
        "methods": {m["name"]: [m["per_scenario"][i][headline] for i in order] for m in table["methods"]},
    }


def format_curve(curve: dict[str, Any]) -> str:
    """One row per method (the retrained pool's and the original's first), one column per value of the setting."""
    rows = {"(retrained)": curve["retrained"], "(original)": curve["original"]}
    rows |= {"(clean)": curve["clean"]} if any(v is not None for v in curve.get("clean", [])) else {}
    rows |= curve["methods"]
    width = max(len(name) for name in rows)
    lines = [
        f"{curve['headline']} of forget={curve['scenario']} against forget.{curve['key']}:",
        f"{'':<{width}}  " + "  ".join(f"{x:>6g}" for x in curve["x"]),
    ]
    lines += [f"{name:<{width}}  " + "  ".join(f"{_num(v):>6}" for v in values) for name, values in rows.items()]
    return "\n".join(lines)


def format_scenarios(table: dict[str, Any]) -> str:
    """final / F / figure per scenario; the header says which figure and what the retrained pool has."""
    cols = table["scenarios"]
    width = max(len(m["name"]) for m in table["methods"])
    cell_w = [max(len(c["label"]), 23) for c in cols]
    heads = [f"{c['headline']} (retrained {_num(c['retrained'])}{_clean(c)})" for c in cols]
    ceilings = [f"ceiling F {_num(c.get('ceiling_f'))}" for c in cols]
    cell_w = [max(w, len(h)) for w, h in zip(cell_w, heads)]
    lines = [
        f"{'method':<{width}}  " + "  ".join(f"{c['label']:>{w}}" for c, w in zip(cols, cell_w)),
        f"{'':<{width}}  " + "  ".join(f"{'final / F / ' + h:>{w}}" for h, w in zip(heads, cell_w)),
        f"{'':<{width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(ceilings, cell_w)),
    ]
    for m in table["methods"]:
        cells = [
            f"{_num(p['final_score'])} / {_num(p['forget_quality'])} / {_num(p[c['headline']])}"
            for p, c in zip(m["per_scenario"], cols)
        ]
        lines.append(f"{m['name']:<{width}}  " + "  ".join(f"{x:>{w}}" for x, w in zip(cells, cell_w)))
    focus = {c["focus"] for c in cols if c["focus"]}
    if len(focus) == 1 and all(c["focus"] for c in cols):  # one scenario swept over a setting: said once
        lines.append(f"focus_acc: accuracy on {focus.pop()}")
    elif focus:
        lines.append("focus_acc: accuracy on " + "; ".join(f"{c['label']}: {c['focus']}" for c in cols if c["focus"]))
    if table.get("curve"):
        lines += ["", format_curve(table["curve"])]
    return "\n".join(lines)


def write_scenarios(table: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """scenarios.json and scenarios.html (the table as text, and per scenario each method's final score and
    F against the ceiling) in `folder`, beside the stability page."""
    import html

    from challenge.reports.leaderboard import _STYLE, _img

    write_json(folder / SCENARIOS_FILE, table, indent=2)
    title = f"The baselines over {len(table['scenarios'])} forget scenarios"
    note = (
        "Each scenario forgets other training images, with its own original model and pool. Per method: final "
        "score / F / the scenario's own figure; the header gives the retrained models' figure and the ceiling F "
        "(retrained against retrained), what a method should come near."
    )
    body = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{html.escape(note)}</p>',
        f'<pre id="scenarios">{html.escape(format_scenarios(table))}</pre>',
        _img(scenarios_plot(table), "final score and forget quality of each method in each scenario"),
        *(
            [_img(curve_plot(table["curve"]), "the scenario's figure against its swept setting")]
            if table.get("curve")
            else []
        ),
        "</body></html>",
    ]
    write_atomic(folder / SCENARIOS_PAGE, "\n".join(body))
    return folder / SCENARIOS_FILE, folder / SCENARIOS_PAGE


def scenarios_plot(table: dict[str, Any]) -> str:
    """Final score and F per scenario, one line per method; the ceiling F as a dashed line."""
    from challenge.reports.leaderboard import _figure, _png

    fig = _figure(10.0, 3.6)
    finals, fs = fig.subplots(1, 2)
    x = np.arange(len(table["scenarios"]))
    for m in table["methods"]:
        for ax, key in ((finals, "final_score"), (fs, "forget_quality")):
            ys = _plotted([p.get(key) for p in m["per_scenario"]])
            ax.plot(x, ys, marker="o", label=m["name"] if ax is finals else None)
    fs.plot(
        x,
        _plotted([c.get("ceiling_f") for c in table["scenarios"]]),
        "k--",
        label="ceiling F",
    )
    for ax, what in ((finals, "final score"), (fs, "forget quality F")):
        ax.set_xticks(x, [c["label"] for c in table["scenarios"]], rotation=15)
        ax.set_ylabel(what)
        ax.set_title(f"{what[0].upper()}{what[1:]} per scenario")
    finals.legend(fontsize=7, loc="center left", bbox_to_anchor=(2.25, 0.5))
    fs.legend(fontsize=7)
    return _png(fig)


def curve_plot(curve: dict[str, Any]) -> str:
    """The headline figure against the swept setting, one line per method; the retrained pool's and the
    original's dashed."""
    from challenge.reports.leaderboard import _figure, _png

    fig = _figure(6.0, 3.6)
    ax = fig.subplots()
    for name, values in curve["methods"].items():
        ax.plot(curve["x"], _plotted(values), marker="o", label=name)
    for name, style in (("retrained", "k--"), ("original", "k:"), ("clean", "k-.")):
        if any(v is not None for v in curve.get(name, [])):
            ax.plot(curve["x"], _plotted(curve[name]), style, label=f"{name} model{'s' if name == 'retrained' else ''}")
    ax.set_xlabel(f"forget.{curve['key']}")
    ax.set_ylabel(curve["headline"])
    ax.set_title(f"{curve['headline']} of forget={curve['scenario']} against forget.{curve['key']}")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _png(fig)


def _plotted(values: list[float | None]) -> list[float]:
    """A missing figure as a gap in the line."""
    return [np.nan if v is None else v for v in values]


def _labels(scenarios: list[dict[str, Any]]) -> list[str]:
    """Each column's name: the scenario's, and where it repeats, the settings its runs differ in (`identified=0.1`,
    not every setting of the scenario); only the settings as a sweep of one scenario."""
    names = [sc["name"] for sc in scenarios]
    out = []
    for sc in scenarios:
        same = [other["settings"] for other in scenarios if other["name"] == sc["name"]]
        if len(same) == 1:
            out.append(sc["name"])
            continue
        label = ",".join(f"{k}={sc['settings'][k]}" for k in _varying(same) if k in sc["settings"])
        out.append(label if len(set(names)) == 1 else f"{sc['name']}({label})")
    return out


def _varying(settings: list[dict[str, Any]]) -> list[str]:
    """The setting names whose values differ between runs (a name one run lacks differs), sorted."""
    keys = sorted(set().union(*settings))
    return [k for k in keys if len({repr(s.get(k)) for s in settings}) > 1]


def _label(sc: dict[str, Any]) -> str:
    settings = ",".join(f"{k}={v}" for k, v in sc["settings"].items())
    return f"{sc['name']}({settings})" if settings else sc["name"]


def _clean(column: dict[str, Any]) -> str:
    """A corrective scenario's clean model's figure, for the header: what undoing the manipulation fully gives."""
    return f", clean {_num(column['clean'])}" if column.get("clean") is not None else ""


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"
