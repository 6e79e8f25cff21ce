"""Custom Keras layers that builder configs can name.

Only public Keras 3 APIs (``keras.ops``, ``keras.layers``, ``keras.saving``) are used here, so the
layers run on any Keras backend. This module imports nothing from the rest of builder: the config
schema imports ``GRADIENTS`` from it, and builder's model loader must import it before
``keras.saving.load_model`` so that ``Threshold`` is registered (otherwise Keras reports
``Could not locate class 'Threshold'``).

Keras 3's own ``keras.activations.threshold`` is a different function ("x where x > threshold,
else default_value"); a config's ``activation: threshold`` means this module's ``Threshold`` layer.
"""

from __future__ import annotations

import math
import numbers

import keras
from keras import ops

#: The backward passes ``Threshold`` offers, in the order they are documented.
GRADIENTS = ("none", "straight_through", "sigmoid")


def _is_real(value) -> bool:
    """True for an int or float (Python or NumPy), False for bools and everything else."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@keras.saving.register_keras_serializable(package="builder")
class Threshold(keras.layers.Layer):
    """Threshold logic unit (step function) activation layer.

    The forward pass is always the exact Heaviside step, whatever `gradient` is: every output is
    exactly `0.0` or `1.0`, in the layer's compute dtype. The step has no useful derivative, so
    `gradient` picks the surrogate used in the backward pass only.

    Formula:
    ``` python
    f(x) = 1.0 if x >= threshold
    f(x) = 0.0 otherwise            # including x = nan

    # Backward pass, by `gradient`:
    #   "none":             df/dx = 0 (the pure step: a model compiles and fits but never learns)
    #   "straight_through": df/dx = 1 (straight-through estimator)
    #   "sigmoid":          df/dx = slope * s * (1 - s),  s = sigmoid(slope * (x - threshold))
    # and df/dx = 0 where x is inf, -inf or nan.
    ```

    Example:
    ``` python
    threshold_layer = Threshold(threshold=0.5)
    input = np.array([-10.0, 0.0, 0.5, 0.7, 10.0])
    result = threshold_layer(input)
    # result = [0., 0., 1., 1., 1.]
    ```

    Args:
        threshold: Finite float. Inputs greater than or equal to it map to `1.0`, the others to
            `0.0`. Defaults to `0.0`.
        gradient: One of `"none"`, `"straight_through"` or `"sigmoid"`: the surrogate gradient
            used in the backward pass (see the formula). Defaults to `"sigmoid"`.
        slope: Finite float > 0. Steepness of the `"sigmoid"` surrogate; its gradient peaks at
            `slope / 4` at the threshold. Ignored by the other surrogates. Defaults to `1.0`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.
    """

    # Default slope=1.0 (the plain logistic sigmoid), from measurements with Adam, Dense(4 or 16)
    # -> Threshold -> Dense(1, sigmoid): slope 2 reached 100% on XOR about twice as fast (24 of 24
    # runs vs 23 of 24 for slope 1) but ended level with slope 1 on a noisy 8-feature problem
    # (test accuracy 0.757 vs 0.752, 5 seeds), while slope 3 already left units stuck (XOR 19 of
    # 24) and slope 0.5 learned slowly (XOR 17 of 24). 1.0 sits mid-way in the range that works.
    def __init__(self, threshold=0.0, gradient="sigmoid", slope=1.0, **kwargs):
        super().__init__(**kwargs)
        if not _is_real(threshold) or not math.isfinite(threshold):
            raise ValueError(
                f"Argument `threshold` must be a finite number. Received: threshold={threshold!r}"
            )
        if not isinstance(gradient, str) or gradient not in GRADIENTS:
            raise ValueError(
                "Argument `gradient` must be one of "
                f"{', '.join(repr(name) for name in GRADIENTS)}. Received: gradient={gradient!r}"
            )
        if not _is_real(slope) or not math.isfinite(slope) or slope <= 0:
            raise ValueError(
                f"Argument `slope` must be a finite number > 0. Received: slope={slope!r}"
            )

        # Plain Python floats keep the config JSON-serializable (NumPy scalars are accepted).
        self.threshold = float(threshold)
        self.gradient = gradient
        self.slope = float(slope)
        self.supports_masking = True
        self.built = True

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        hard = ops.cast(ops.greater_equal(x, self.threshold), self.compute_dtype)

        # The surrogate sees only finite inputs, so that `soft - stop_gradient(soft)` is exactly 0
        # (inf - inf and nan would turn the output into nan) and its gradient is 0 at inf and nan.
        x = ops.where(ops.isfinite(x), x, ops.zeros_like(x))
        if self.gradient == "sigmoid":
            soft = ops.sigmoid(self.slope * (x - self.threshold))
        elif self.gradient == "straight_through":
            soft = x
        else:  # "none": a zero gradient rather than None, so that `fit` runs (and learns nothing).
            soft = 0.0 * x

        # `hard + (soft - stop_gradient(soft))`, not `soft + stop_gradient(hard - soft)`: the added
        # term is exactly 0 here, while the latter can round away from 0 or 1 (with the identity,
        # x = 3e7 gives 3e7 + (1 - 3e7) = 0.0 in float32, as 1 - 3e7 rounds to -3e7).
        return hard + (soft - ops.stop_gradient(soft))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "threshold": self.threshold,
                "gradient": self.gradient,
                "slope": self.slope,
            }
        )
        return config

    def compute_output_shape(self, input_shape):
        return input_shape
