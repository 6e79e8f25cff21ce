"""The hand-written reference for bench 1: the salary regressor as a careful tutorial reads it.

pandas to read the CSV, scikit-learn's ``StandardScaler`` on the inputs and on the target (a raw
salary target does not train), ``Sequential([Dense(1)])``, Adam at its default settings and
``fit(batch_size=32)``, with the validation rows passed as ``validation_data``. The rows are split
70/15/15 with the same seeded permutation builder uses, so both train on identical rows.

``run`` trains until the test MSE, checked after each epoch, is within ``tolerance`` of exact
least squares, and reports the wall time from just after the imports.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

FEATURES = ["age", "years_worked", "past_salary", "years_in_industry"]
TARGET = "salary"


def split(n: int, seed: int = 42) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """70/15/15 train, validation, test row indices (builder.data.split_rows's permutation)."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = n_val = round(n * 0.15)
    return order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test]


def run(csv: str, least_squares_mse: float, tolerance: float = 0.01, max_epochs: int = 300) -> dict:
    """Train until within ``tolerance`` of least squares; seconds since the call, epochs run."""
    started = time.perf_counter()
    frame = pd.read_csv(csv)
    x = frame[FEATURES].to_numpy("float32")
    y = frame[[TARGET]].to_numpy("float32")
    train, val, test = split(len(frame))

    x_scaler = StandardScaler().fit(x[train])
    y_scaler = StandardScaler().fit(y[train])
    x_train, y_train = x_scaler.transform(x[train]), y_scaler.transform(y[train])
    x_val, y_val = x_scaler.transform(x[val]), y_scaler.transform(y[val])
    x_test = x_scaler.transform(x[test])

    model = keras.Sequential([keras.Input(shape=(len(FEATURES),)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(), loss="mse")

    result = {"reached": False}

    class TestMSE(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            pred = y_scaler.inverse_transform(model.predict(x_test, verbose=0))
            mse = float(np.mean((pred - y[test]) ** 2))
            result.update(epochs=epoch + 1, mse_ratio=mse / least_squares_mse)
            if mse <= (1 + tolerance) * least_squares_mse:
                result.update(reached=True, seconds=time.perf_counter() - started)
                self.model.stop_training = True

    model.fit(
        x_train,
        y_train,
        batch_size=32,
        epochs=max_epochs,
        validation_data=(x_val, y_val),
        callbacks=[TestMSE()],
        verbose=0,
    )
    result.setdefault("seconds", time.perf_counter() - started)
    return result
