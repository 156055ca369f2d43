"""How many batches a training loader yields: one rule for the loader and for the budget's price.

Its own module, free of torch, because the sandboxed child imports the budget before torch.
"""

from __future__ import annotations

import math


def drops_last(n: int, batch_size: int, drop_last: bool) -> bool:
    """Whether a loader of n images drops its last short batch: never when that would leave no batch."""
    return drop_last and n > batch_size


def batches_per_epoch(n: int, batch_size: int, drop_last: bool) -> int:
    """What a training loader of n images yields per epoch (the budget prices a retrain by it)."""
    return n // batch_size if drops_last(n, batch_size, drop_last) else math.ceil(n / batch_size)
