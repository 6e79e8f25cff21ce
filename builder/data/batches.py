"""The numpy edge: a ``Table``'s parts as ``keras.utils.PyDataset`` batches, on any backend.

JAX and PyTorch train from these; TensorFlow trains from ``builder.data.tfdata`` (the same
windows and the same batches, cut in C++ and prefetched). Neither path imports the other's
library. The rules are those of ``tfdata``: a training part is shuffled again on every pass,
seeded by ``(shuffle_seed, pass)`` (``Table.windows``); every batch is full except the last of a
pass; an epoch of ``steps`` batches may span several passes, and passes continue across epochs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import keras
import numpy as np

from builder.data.table import Table


class Batches(keras.utils.PyDataset):
    """One part of a table as ``(x, y)`` float32 batches, ``y`` of shape ``(n,)``.

    ``y`` is flat, as Keras's own array input hands it to a step: the same batches with ``y`` of
    shape ``(n, 1)`` trained the salary MLP on JAX 1.3x slower, with the same losses
    (bench/README.md, "Feeding JAX").

    Keras reads a ``PyDataset`` by index, in order, one worker (the default). Each index names
    one batch of one pass, so a repeated index (Keras reads the first batch to learn the
    shapes) gives the same batch again: the pass's windows are read anew from its start.

    Args:
        table: the table (in memory or streamed).
        part: ``train``, ``validation`` or ``test``.
        batch_size: rows per batch.
        shuffle_seed: shuffle every pass with this seed; ``None`` keeps the file's order.
        steps: batches per epoch (default: one pass).
    """

    def __init__(
        self,
        table: Table,
        part: str,
        batch_size: int,
        *,
        shuffle_seed: int | None = None,
        steps: int | None = None,
    ) -> None:
        super().__init__()
        self.table = table
        self.part = part
        self.batch_size = batch_size
        self.shuffle_seed = shuffle_seed
        rows = table.stats.rows[part] if table.streamed else len(table.float32(part)[1])
        self.pass_batches = max(1, math.ceil(rows / batch_size))
        self.steps = steps or self.pass_batches
        self.epoch = 0
        self._pass: int | None = None
        self._next = 0  # the index in the pass that the cursor hands out next
        self._cursor: Iterator[tuple[np.ndarray, np.ndarray]] | None = None

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        step = self.epoch * self.steps + int(index)
        pass_index, batch = divmod(step, self.pass_batches)
        if pass_index != self._pass or batch < self._next:
            self._pass, self._next = pass_index, 0
            self._cursor = self._cut(pass_index)
        while True:
            found = next(self._cursor)
            self._next += 1
            if self._next > batch:
                x, y = found
                return x, y[:, 0]

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def _cut(self, pass_index: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        # Windows are cut into batches across their boundaries, as tf.data's rebatch does.
        windows = self.table.windows(self.part, shuffle_seed=self.shuffle_seed, epoch=pass_index)
        held_x: list[np.ndarray] = []
        held_y: list[np.ndarray] = []
        held = 0
        for x, y in windows:
            start = 0
            if held:
                start = min(self.batch_size - held, len(y))
                held_x.append(x[:start])
                held_y.append(y[:start])
                held += start
                if held < self.batch_size:
                    continue
                yield np.concatenate(held_x), np.concatenate(held_y)
                held_x, held_y, held = [], [], 0
            full = start + (len(y) - start) // self.batch_size * self.batch_size
            for begin in range(start, full, self.batch_size):
                yield x[begin : begin + self.batch_size], y[begin : begin + self.batch_size]
            if full < len(y):
                held_x, held_y, held = [x[full:]], [y[full:]], len(y) - full
        if held:
            yield np.concatenate(held_x), np.concatenate(held_y)


def batches(
    table: Table,
    part: str,
    batch_size: int,
    *,
    shuffle_seed: int | None = None,
    steps: int | None = None,
) -> Batches:
    """``Batches`` of one part of a table (see the class)."""
    return Batches(table, part, batch_size, shuffle_seed=shuffle_seed, steps=steps)
