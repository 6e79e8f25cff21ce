"""The ``tf.data`` edge: a ``Table``'s parts as batched, prefetched datasets.

The rest of ``builder.data`` hands out numpy arrays and never imports TensorFlow; this module
imports it inside its functions, for the TensorFlow backend and ``tf.distribute``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from builder.data.table import Table


def dataset(table: Table, part: str, batch_size: int, *, shuffle_seed: int | None = None) -> Any:
    """A batched, prefetched ``tf.data.Dataset`` of ``(x, y)`` for one part of a table.

    Shuffling happens here, reseeded each epoch, because ``fit(shuffle=True)`` on numpy arrays
    repeats one permutation every epoch after ``set_random_seed``. A table in memory is batched
    from its arrays, a streamed one from its windows, read from the file each epoch.
    """
    if table.streamed:
        return _windowed(table, part, batch_size, shuffle_seed)
    x, y = table.float32(part)
    return _resident(x, y, batch_size, shuffle_seed)


def _resident(x_array, y_array, batch_size: int, shuffle_seed: int | None) -> Any:
    # Work is per batch, never per row: each epoch draws one permutation of the row indices
    # (``Dataset.random`` gives a new seed each epoch) and every batch is one ``gather``;
    # unshuffled data is sliced into batches up front. Row-by-row ``shuffle(n).batch(b)``
    # measured 3x slower on 700,000 rows (bench/README.md).
    import tensorflow as tf

    n = len(y_array)
    x = tf.constant(x_array)
    y = tf.constant(y_array[:, None])
    batches = math.ceil(n / batch_size)
    if shuffle_seed is None:
        full = n - n % batch_size
        data = tf.data.Dataset.from_tensor_slices(
            (
                tf.reshape(x[:full], (-1, batch_size, x.shape[1])),
                tf.reshape(y[:full], (-1, batch_size, 1)),
            )
        )
        if full < n:
            data = data.concatenate(tf.data.Dataset.from_tensors((x[full:], y[full:])))
    else:
        pad = batches * batch_size - n

        def permuted(key):
            order = tf.random.experimental.stateless_shuffle(
                tf.range(n, dtype=tf.int64), seed=tf.stack([key, tf.constant(0, tf.int64)])
            )
            # -1 pads the last batch; `rows` drops it again.
            order = tf.concat([order, tf.fill([pad], tf.constant(-1, tf.int64))], axis=0)
            return tf.reshape(order, (batches, batch_size))

        def rows(index):
            index = index[index >= 0]
            return tf.gather(x, index), tf.gather(y, index)

        epoch_keys = tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True)
        data = epoch_keys.take(1).map(permuted).unbatch().map(rows)
    data = data.apply(tf.data.experimental.assert_cardinality(batches))
    return data.prefetch(tf.data.AUTOTUNE)


def _windowed(table: Table, part: str, batch_size: int, shuffle_seed: int | None) -> Any:
    # Every batch is full except the last. Python hands over whole windows and ``rebatch`` cuts
    # them in C++: a Python generator per batch cost ~0.25 ms a step, 1.4x the epoch time on a
    # 1M-row file (bench/README.md, scale). The cardinality is asserted from the statistics
    # pass, so Keras knows the steps per epoch and does not warn that the input ran out of data.
    import tensorflow as tf

    n = table.stats.rows[part]
    epochs = itertools.count()

    def generate():
        return table.windows(part, shuffle_seed=shuffle_seed, epoch=next(epochs))

    spec = (
        tf.TensorSpec((None, len(table.features)), tf.float32),
        tf.TensorSpec((None, 1), tf.float32),
    )
    data = tf.data.Dataset.from_generator(generate, output_signature=spec)
    # The next window is parsed while this one trains (one more window in memory).
    data = data.prefetch(1).rebatch(batch_size)
    data = data.apply(tf.data.experimental.assert_cardinality(math.ceil(n / batch_size)))
    return data.prefetch(tf.data.AUTOTUNE)
