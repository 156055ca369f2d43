"""result.json's `scenario` section: which images were forgotten (challenge.data.scenarios), and the
figures that say how well that scenario's request was met, beside F.

Every scenario has the forget set's and the test set's accuracy (the original's, the retrained pool's,
the unlearned runs').
A scenario with focus images (the forgotten class's or subgroup's test images, the forget people's own
test images) has their accuracy too: the retrained models never saw the class, so their accuracy
there is what forgetting it looks like, whatever F says. The original's and the pool's figures are
read from what the pool stored when it trained them; the runs' from the judge's per-image verdicts
on test, so that no model is evaluated twice.
"""

from __future__ import annotations

import numpy as np

from challenge.data.splits import Split
from challenge.pool import PoolEntry
from challenge.pool.reference import original_metrics
from challenge.scoring.context import Context
from challenge.scoring.evaluation import RunEval, detached_focus
from challenge.scoring.result import Scenario, ScenarioFigure

FORGET = {
    "identities": "every training image of some people",
    "random": "a random {fraction:.0%} of the training images",
    "class": "every training image of age group {label}",
    "subgroup": "every training image of the people with {trait}={value}",
    "corrective:confusion": (
        "the images found among those mislabelled before training (age groups {groups} swapped for "
        "{confused:.0%} of their people; {identified:.0%} of those people found)"
    ),
    "corrective:poison": (
        "the images found among those poisoned before training ({poisoned:.0%} of the training images carry a "
        "trigger patch and the label of age group {target}; {identified:.0%} of them found)"
    ),
}
FOCUS = {
    "identities": "the forget people's test images",
    "class": "the test images of age group {label}",
    "subgroup": "the test images of {trait}={value}",
    "corrective:confusion": "the test images of age groups {groups}, whose labels were confused",
    "corrective:poison": (
        "triggered copies of the test images outside age group {target}, labelled {target}: accuracy there is the "
        "attack's success rate"
    ),
}


def scenario_section(ctx: Context, evals: list[RunEval] | None = None) -> Scenario:
    """The section as known before the runs (evals None: no unlearned figures) or after them."""
    split = ctx.dm.split
    # the originals the runs start from (pool.originals): do_nothing's figures are their mean, so the original's are too
    original = [original_metrics(ctx.pool.original_of(s)) for s in range(ctx.settings.originals)]
    clean = original_metrics(ctx.pool.clean_path) if ctx.dm.forget.manipulates else None
    settings = dict(split.scenario)
    name = settings.pop("name")
    runs = evals or []
    figures = {
        "forget_acc": _figure(original, clean, ctx.entries, "forget", [e.forget_acc for e in runs]),
        # clean test images: what a fix must keep
        "test_acc": _figure(original, clean, ctx.entries, "test", [e.test_acc for e in runs]),
    }
    if len(split.focus):
        figures["focus_acc"] = _figure(original, clean, ctx.entries, "focus", _focus_accuracies(split, runs))
    return Scenario(
        name=name,
        settings=settings,
        sizes={p: len(split.indices(p)) for p in ("train", "forget", "retain", "test", "focus")},
        focus=_text(FOCUS, name, settings) if len(split.focus) else "",
        headline="focus_acc" if len(split.focus) else "forget_acc",
        figures=figures,
    )


def _figure(
    original: list[dict], clean: dict | None, entries: list[PoolEntry], part: str, unlearned: list[float | None]
) -> ScenarioFigure:
    """None where a figure is missing anywhere: a mean over some of the models would mislead. `clean`: the clean
    model's stored figures (None where the scenario has no clean model; empty where the pool lacks its file)."""
    retrained = [((e.metrics or {}).get(part) or {}).get("acc") for e in entries]
    return ScenarioFigure(
        original=_mean([(o.get(part) or {}).get("acc") for o in original]),
        retrained=_mean(retrained),
        unlearned=_mean(unlearned),
        clean=((clean or {}).get(part) or {}).get("acc"),
    )


def _focus_accuracies(split: Split, evals: list[RunEval]) -> list[float | None]:
    """Each run's accuracy on the focus images: from its verdicts on them where the judge evaluated them on their
    own (detached_focus: triggered copies), else from its per-image verdicts on test (focus is part of test)."""
    if detached_focus(split):
        return [float(e.focus_correct.mean()) if len(e.focus_correct) == len(split.focus) else None for e in evals]
    at = np.searchsorted(split.test, split.focus)
    return [float(e.test_correct[at].mean()) if len(e.test_correct) == len(split.test) else None for e in evals]


def _text(table: dict[str, str], name: str, settings: dict) -> str:
    """A scenario's sentence: its kind's own where it has kinds (corrective: confusion, poison)."""
    return table.get(f"{name}:{settings.get('kind')}", table.get(name, name)).format(**settings)


def _mean(values: list[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return float(np.mean(values))


def forget_text(section: Scenario) -> str:
    """What the forget set is, in a sentence's words, with its size: for pages that participants read."""
    what = _text(FORGET, section.name, section.settings)
    sizes = section.sizes
    text = f"{what} ({sizes.get('forget', 0)} images; the retain set is the other {sizes.get('retain', 0)})"
    return text + (f"; {section.focus} are reported on their own" if section.focus else "")
