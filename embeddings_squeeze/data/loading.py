"""Loading batches where a broken file in a worker process still ends in one clear line."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import (
    DataLoader,
    default_collate,
)

from embeddings_squeeze.errors import UserError


@dataclass(frozen=True)
class UnreadableSample:
    """What a DataLoader worker returns for a file it cannot read, instead of raising.

    An exception raised in a worker process reaches the main process only as traceback text; this
    travels as data, and ``CheckedDataLoader`` raises it there as the UserError it is.
    """

    message: str


def collate_or_report(items: list):
    """``default_collate``, or the first ``UnreadableSample`` among ``items``; tensors of different
    sizes (labels at each mask's own size) stay a list."""
    for item in items:
        if isinstance(item, UnreadableSample):
            return item
    fields = list(zip(*items))
    return [
        list(field)
        if torch.is_tensor(field[0]) and len({f.shape for f in field}) > 1
        else default_collate(field)
        for field in fields
    ]


class CheckedDataLoader(DataLoader):
    """A DataLoader that turns an ``UnreadableSample`` from a worker into a UserError."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, collate_fn=collate_or_report, **kwargs)

    def __iter__(self):
        for batch in super().__iter__():
            if isinstance(batch, UnreadableSample):
                raise UserError(batch.message)
            yield batch
