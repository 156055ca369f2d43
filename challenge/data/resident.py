"""Batches indexed out of tensors kept on the training device: the kit's own fast data path.

A DataLoader over `FaceDataset` builds one dict per image and collates 64 of them per batch; on
a GPU that, not a small network, bounds the speed. `ResidentBatches` gathers a part's tensors
once, on the device, and makes each batch with one index op. It draws from the random state what
`DataLoader(dataset, shuffle=...)` draws, in the same order: per epoch the loader's base seed (for
workers, unused here) and, when shuffling, the `RandomSampler`'s seed, each from the loader's
generator or torch's global one, then `torch.randperm` on the CPU. So a seed gives the same
batches, and everything after them the same bits, by either path (tests/test_resident.py), and
training code that draws from the global generator between epochs sees the same stream.

Participants still get DataLoaders over map-style datasets (the Kaggle contract): this is the
kit's path for training the original and the pool, and for evaluating them.
"""

from __future__ import annotations

from typing import Iterator

import torch

from challenge.data.batches import batches_per_epoch, drops_last
from challenge.data.faces import FaceDataset

KEYS = ("image", "age_group", "age", "person_id", "image_id")


class ResidentBatches:
    """The batches of `DataLoader(dataset, batch_size, shuffle, drop_last, generator)`, as one dict
    of device tensors each; `drop_last` follows `challenge.data.batches.drops_last`."""

    def __init__(
        self,
        dataset: FaceDataset,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        rows = dataset.indices
        columns = (dataset.images[rows], dataset.groups[rows], dataset.ages[rows], dataset.person_ids[rows], rows)
        self.tensors = {k: v.to(device) for k, v in zip(KEYS, columns)}
        self.n, self.batch_size, self.shuffle, self.generator = len(rows), int(batch_size), bool(shuffle), generator
        self.drop_last = drops_last(self.n, self.batch_size, drop_last)

    def __len__(self) -> int:
        return batches_per_epoch(self.n, self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        """A generator: nothing is drawn until the first batch is asked for, so a caller that only
        checks the object is iterable (Lightning does) consumes no random state."""
        order, generator = self._order()
        device = self.tensors["image"].device
        if order is not None:
            order = order.to(device)
        for b in range(len(self)):
            span = slice(b * self.batch_size, (b + 1) * self.batch_size)
            yield {k: v[order[span]] if order is not None else v[span] for k, v in self.tensors.items()}
        if generator is not None:
            # RandomSampler draws a second, empty permutation when it is exhausted (asked past the last
            # batch, as here): with the loader's own generator that draw moves the next epoch's order.
            torch.randperm(self.n, generator=generator)

    def _order(self) -> tuple[torch.Tensor | None, torch.Generator | None]:
        """This epoch's permutation (None: manifest order) and the generator it came from, drawn as
        DataLoader and RandomSampler draw them."""
        if self.shuffle and self.generator is None:
            return sampler_order(self.n), None
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)  # the DataLoader iterator's base seed
        if not self.shuffle:
            return None, None
        return torch.randperm(self.n, generator=self.generator), self.generator


def sampler_order(n: int, stream: torch.Generator | None = None) -> torch.Tensor:
    """One epoch's order of a shuffling DataLoader without a generator of its own, drawn from `stream`
    (None: torch's global generator, as the loader draws it): the iterator's base seed, then the
    RandomSampler's seed, then its permutation from a generator of that seed. challenge.training.packed
    draws each packed model's orders from that model's own stream by it."""
    torch.empty((), dtype=torch.int64).random_(generator=stream)  # the DataLoader iterator's base seed
    seed = int(torch.empty((), dtype=torch.int64).random_(generator=stream).item())
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))
