"""The hand-written reference for bench 2: builder's salary MLP written directly in Keras.

The same layers as ``configs/salary_mlp.yaml`` builds (input normalization adapted on the training
rows, Dense 32 ReLU, Dense 16 ReLU, Dense 1, a ``Rescaling`` back to dollars), the same optimizer
and metrics, the same rows (builder's seeded 70/15/15 permutation), then Keras's defaults:
``fit`` on numpy arrays with ``batch_size`` and ``validation_data``, ``steps_per_execution=1``,
``jit_compile="auto"`` (off on a CPU).
"""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd

FEATURES = ["age", "years_worked", "past_salary", "years_in_industry"]
TARGET = "salary"


def split(n: int, seed: int = 42) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """70/15/15 train, validation, test row indices (builder.data.split_rows's permutation)."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = n_val = round(n * 0.15)
    return order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test]


def run(csv: str, epochs: int, batch_size: int, callbacks: list) -> int:
    """Train the MLP; returns the number of training rows."""
    frame = pd.read_csv(csv)
    x = frame[FEATURES].to_numpy("float32")
    y = frame[[TARGET]].to_numpy("float32")
    train, val, _ = split(len(frame))

    keras.utils.set_random_seed(42)
    normalization = keras.layers.Normalization()
    normalization.adapt(x[train])
    model = keras.Sequential(
        [
            keras.Input(shape=(len(FEATURES),)),
            normalization,
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1),
            keras.layers.Rescaling(scale=float(y[train].std()), offset=float(y[train].mean())),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    model.fit(
        x[train],
        y[train],
        batch_size=batch_size,
        epochs=epochs,
        validation_data=(x[val], y[val]),
        callbacks=callbacks,
        verbose=0,
    )
    return len(train)
