"""Hostile, and scored on its own weights: every run after the first writes a zeroed classifier where run 0's
weights were, in the child's outputs. Each run's weights leave the sandbox before the next run starts, so
what it writes there is a stray file, removed before the next run, and run 0 is judged on what it returned.
"""

import sys
import time
from pathlib import Path

import torch


def unlearning(net, retain_loader, forget_loader, val_loader):
    time.sleep(0.5)  # leave the scorer time to evaluate the run before (sleeping costs no budget)
    outputs = Path(sys.argv[2])  # python -m challenge.scoring.child <inputs> <outputs> <scratch>
    if not (outputs / "run-0000.start").exists():  # not run 0: the parent removes each run's markers once it is taken
        state = {k: torch.zeros_like(v) if k.startswith("fc.") else v.clone() for k, v in net.state_dict().items()}
        torch.save(state, outputs / ".rewrite.tmp")
        (outputs / ".rewrite.tmp").replace(outputs / "run-0000.pt")
