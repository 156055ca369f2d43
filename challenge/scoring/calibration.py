"""The price of a retrain, measured where the runs will run: on the child's side of the sandbox.

The scorer's plan (challenge.scoring.budget.retrain_plan) names the pool's optimiser, batch size and
steps per retrain; the child times a few of those steps in a process forked like the runs, before the
participant's file is ever imported, so nothing it starts can inflate the price. On a GPU the timed
steps are bracketed by torch.cuda.synchronize() and the clock is wall time; on a CPU it is the process's CPU time.
"""

from __future__ import annotations

import time
from typing import Any


def calibrate(net: Any, dataset: Any, batch_size: int, plan: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """Seconds per training step of `net` (a fresh copy is trained, the original stays as it is).

    Warm-up steps first, so that the first-use costs of the kernels and the allocator are not counted
    into the price of a step (each run's process pays its own, and is charged for them).
    """
    import copy
    import importlib

    import torch
    from torch.utils.data import DataLoader

    model = copy.deepcopy(net).to(device).train()
    module, _, name = plan["optimizer"]["target"].rpartition(".")
    optimizer = getattr(importlib.import_module(module), name)(model.parameters(), **plan["optimizer"]["kwargs"])
    weights = (
        torch.tensor(plan["class_weights"], dtype=torch.float32, device=device) if plan.get("class_weights") else None
    )
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    cuda = device.startswith("cuda")

    def clock() -> float:
        if cuda:
            torch.cuda.synchronize()
            return time.perf_counter()
        return time.process_time()

    def steps(n: int) -> None:
        done = 0
        while done < n:
            for batch in loader:
                optimizer.zero_grad(set_to_none=True)
                loss_fn(model(batch["image"].to(device)), batch["age_group"].to(device)).backward()
                optimizer.step()
                done += 1
                if done == n:
                    return

    with torch.enable_grad():
        steps(plan["warmup"])
        start = clock()
        steps(plan["steps"])
        per_step = (clock() - start) / plan["steps"]
    return {
        "clock": "wall" if cuda else "cpu",
        "per_step_seconds": per_step,
        "steps_timed": plan["steps"],
        "steps_per_retrain": plan["steps_per_retrain"],
        "retrain_seconds": per_step * plan["steps_per_retrain"],
    }
