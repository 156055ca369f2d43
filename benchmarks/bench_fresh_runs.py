"""What a fresh process per run costs: the template's runs in one shared process (the kit before) against
one forked process per run (the kit now, challenge.scoring.child), alternating in the same benchmark run.

    python benchmarks/bench_fresh_runs.py [--runs 16] [hydra overrides of the score config, e.g. experiment=tiny]

The data and an original net of the preset are staged as the scorer stages them; then a fresh interpreter
that imports only what the sandboxed child imports (so that a fork copies what the child's would) loads
them as the child does (challenge.scoring.child: load, warm) and measures, in CPU seconds:
- shared: the file imported once; each run seeds, copies the original, builds its loaders and calls
  `unlearning()` in the same process, as the child did before every run started fresh;
- fresh: the kit's own `Run` through the kit's own `in_own_process` (fork, import the file, seed, loaders,
  `unlearning()`, save the weights, exit), read from the reaped children as the meter charges a run now,
  for the template and for baselines/do_nothing.py (the fixed cost of a fresh run alone), and the kit's own part
  of a run (`Run.kit_part`: a run without the file), which the meter credits to each run.
Single-threaded on the CPU (scorer.threads), without the sandbox (bench_sandbox measures that), the kinds
alternating run by run so that the machine's load falls on all alike; medians. Twice: with the parent's memory
on 4 KB pages, and on huge pages (challenge.scoring.run.huge_pages, which the kit asks for from 64 runs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "submissions" / "template.py"
DO_NOTHING = REPO / "baselines" / "do_nothing.py"


def stage(overrides: list[str]) -> tuple[Path, int, int]:
    """data.pt and original.pt as the scorer stages them; the preset's batch size and thread count."""
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import open_dict

    from challenge.cli import CONF_DIR
    from challenge.scoring.stage import staged_data
    from challenge.training.net import NetSpec, save_net

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("score", ["logger=none", *overrides])
    work = Path(tempfile.mkdtemp(prefix="bench-fresh-"))  # main() deletes it
    with open_dict(cfg):
        cfg.paths.cache_dir = cfg.paths.output_dir = str(work)
    dm = instantiate(cfg.data)
    dm.setup()
    torch.save(staged_data(dm), work / "data.pt")
    spec = NetSpec(cfg.model.net.name, dm.num_classes, dict(cfg.model.net.get("kwargs") or {}))
    save_net(spec.create().eval(), spec, {}, work / "original.pt")
    print(f"staged {cfg.model.net.name} on {len(dm.dataset('retain'))} retain images in {work}", flush=True)
    return work, int(cfg.data.batch_size), int(cfg.scorer.threads)


def measure(work: Path, runs: int, batch_size: int, threads: int, huge: bool) -> None:
    """In a process with the child's imports only: shared against fresh runs, alternating."""
    import copy
    import json
    import resource
    import statistics
    import time

    import torch

    from challenge.scoring.run import HUGE_PAGES_FROM, Run, in_own_process, load_parts, loaders, seed_everything, warm
    from challenge.scoring.submission import compile_submission, load_submission
    from challenge.training.net import load_net

    os.setsid()  # a session of its own, as the sandbox gives the child
    torch.set_num_threads(1)
    original, _, _ = load_net(work / "original.pt")
    parts = load_parts(work / "data.pt")
    before_warm = time.process_time()
    warm(original, parts, batch_size, "cpu", huge=huge)
    warm_seconds = time.process_time() - before_warm
    code = compile_submission(TEMPLATE)
    shared_fn = load_submission(TEMPLATE, code)
    fresh = Run(TEMPLATE, code, {}, [original], parts, batch_size, threads, work, "cpu")
    idle = Run(DO_NOTHING, compile_submission(DO_NOTHING), {}, [original], parts, batch_size, threads, work, "cpu")

    def children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def forked(run: Run, i: int) -> tuple[float, dict[str, float]]:
        before, mine = children(), time.process_time()
        status, report = in_own_process(lambda fd: run(i, i, fd), work / "failure.json")
        if status != 0:
            sys.exit(
                f"{run.source.name}'s run {i} failed in its own process (status {status}): see {work / 'failure.json'}"
            )
        return children() - before + time.process_time() - mine, json.loads(report)  # the fork's own work is ours

    def kit_part() -> float:
        before, mine = children(), time.process_time()
        status, _ = in_own_process(lambda fd: fresh.kit_part(work / "kit-run.pt", fd), work / "failure.json")
        if status != 0:
            sys.exit(f"the kit's own part of a run failed in its own process (status {status})")
        return children() - before + time.process_time() - mine

    rows: dict[str, list[float]] = {k: [] for k in ("shared", "around", "fresh", "import", "save", "nothing", "kit")}
    for i in range(runs):
        torch.set_num_threads(threads)
        t0 = time.process_time()
        seed_everything(i)
        net = copy.deepcopy(original)
        args = loaders(parts, batch_size, i)
        t1 = time.process_time()
        shared_fn(net, *args)
        t2 = time.process_time()
        torch.save({k: v.clone() for k, v in net.state_dict().items()}, work / "shared.pt")
        rows["shared"].append(t2 - t1)
        rows["around"].append(time.process_time() - t2 + t1 - t0)
        torch.set_num_threads(1)
        cost, times = forked(fresh, i)
        rows["fresh"].append(cost)
        rows["import"].append(times["import_seconds"])
        rows["save"].append(times["save_seconds"])
        rows["nothing"].append(forked(idle, i)[0])
        rows["kit"].append(kit_part())
    med = {k: statistics.median(v) for k, v in rows.items()}
    # Before, a run's markers held unlearning() alone, but the copy, the loaders and the save were charged to the
    # submission too (as work outside the runs, in the verdict on all N): a run's whole charge was the sum.
    before, after = med["shared"] + med["around"], med["fresh"]
    table = [
        ("shared process (before): unlearning(), inside the run's markers", med["shared"]),
        ("  + copy, loaders, save around it (charged outside the runs)", med["around"]),
        ("  = a run's whole charge before", before),
        ("fresh process (now): the whole run's process, its charge", after),
        ("  of which import of the file, seed, loaders (wall)", med["import"]),
        ("  of which state dict out (wall)", med["save"]),
        ("fresh minus shared, per run", after - before),
        (f"a fresh run of {DO_NOTHING.name}: fork, import, loaders, save, exit", med["nothing"]),
        ("the kit's own part of a fresh run (Run.kit_part), credited to each run", med["kit"]),
        ("the template's charge now: fresh process less that credit", after - med["kit"]),
    ]
    rss = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("RssAnon"))
    pages = f"huge pages (the kit's from {HUGE_PAGES_FROM} runs on)" if huge else "4 KB pages"
    print(
        f"fresh process per run, {pages}: {runs} runs of {TEMPLATE.name} each way, alternating; threads {threads}; "
        f"medians, CPU s; the warm parent holds {int(rss) // 1024} MB of anonymous memory, warmed in "
        f"{warm_seconds:.2f} s"
    )
    print(f"{'':<72}{'per run s':>10}{'% of before':>13}")
    for name, v in table:
        print(f"{name:<72}{v:>10.4f}{100 * v / before:>12.1f}%")
    print(
        f"starting each run fresh costs the template {100 * (after - before) / before:+.1f}% of its run time and "
        f"{100 * (after - med['kit'] - before) / before:+.1f}% of its charge (target <= 5%); a fresh run's fixed "
        f"cost alone is {100 * med['nothing'] / before:.1f}% of it"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--measure", nargs=4, metavar=("FOLDER", "BATCH", "THREADS", "HUGE"), help=argparse.SUPPRESS)
    args, overrides = parser.parse_known_args(argv)
    if args.measure:
        folder, batch, threads, huge = args.measure
        return measure(Path(folder), args.runs, int(batch), int(threads), huge == "1")
    work, batch, threads = stage(overrides)
    code = 0
    try:
        for huge in ("0", "1"):  # each in a fresh interpreter: huge pages cannot be undone
            cmd = [sys.executable, __file__, "--runs", str(args.runs), "--measure", str(work), str(batch), str(threads)]
            code = code or subprocess.run([*cmd, huge]).returncode
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
