"""The names and limits a config may use: allow-lists, not lookups.

A config can never name arbitrary code: every activation, optimizer, loss, metric and initializer
is one of these. tests/test_config.py checks that each resolves in Keras, so the lists cannot
drift silently. No imports: the schema, its messages and the YAML reader all read these.
"""

# Keras's own `threshold` activation means something else (x if x > t else default); here the name
# means builder's step layer, so it is listed separately and never passed to Keras.
KERAS_ACTIVATIONS = (
    "celu", "elu", "exponential", "gelu", "hard_shrink", "hard_sigmoid", "hard_silu",
    "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "mish", "relu", "relu6",
    "selu", "sigmoid", "silu", "soft_shrink", "softmax", "softplus", "softsign", "sparse_plus",
    "squareplus", "swish", "tanh", "tanh_shrink",
)  # fmt: skip
ACTIVATIONS = (*KERAS_ACTIVATIONS, "threshold")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "lion")
LOSSES = (
    "mse", "mae", "huber", "log_cosh", "mean_squared_error", "mean_absolute_error",
    "mean_squared_logarithmic_error", "binary_crossentropy", "hinge", "squared_hinge",
    "sparse_categorical_crossentropy",
)  # fmt: skip
CLASSIFICATION_LOSSES = (
    "binary_crossentropy", "hinge", "squared_hinge", "sparse_categorical_crossentropy",
)  # fmt: skip
# Losses of a single output unit against 0/1 labels (two classes).
BINARY_LOSSES = ("binary_crossentropy", "hinge", "squared_hinge")
# Metrics that read one output unit as a probability of class 1: two classes only.
BINARY_METRICS = ("binary_accuracy", "auc", "precision", "recall")
METRICS = (
    "mae", "mse", "mape", "root_mean_squared_error", "mean_absolute_error",
    "mean_squared_error", "accuracy", "binary_accuracy", "auc", "precision", "recall",
)  # fmt: skip
INITIALIZERS = (
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
    "lecun_normal", "orthogonal", "random_normal", "random_uniform", "truncated_normal",
    "zeros", "ones",
)  # fmt: skip

# Size limits, checked before any memory is allocated.
MAX_UNITS = 65_536
MAX_EPOCHS = 100_000
# With `epochs: auto` an epoch is one pass over the training rows or this many optimizer steps,
# whichever is more: on a small file a pass is one or two steps, early stopping's patience
# (counted in epochs) would then end the training after a few dozen steps, and each epoch's
# validation and callbacks would cost more than its training.
MIN_EPOCH_STEPS = 16
DEFAULT_STEPS = 2000  # training.steps when epochs is auto and steps is not given
MAX_STEPS = 100_000_000
MAX_PARAMETERS = 50_000_000
MAX_YAML_NODES = 100_000  # after alias expansion: refuses "billion laughs"
MAX_YAML_DEPTH = 32  # nesting of mappings and lists; the deepest config key is 7 levels down
MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: a config is a page of text; read with this cap, never whole
MAX_PATH_BYTES = 4096  # PATH_MAX on Linux: data.path as UTF-8
MAX_PATH_PART_BYTES = 255  # NAME_MAX: one component of data.path
MAX_SEED = 2**32 - 1  # keras.utils.set_random_seed (numpy's legacy seeding) takes 0 .. 2**32 - 1
FLOAT32_MAX = 3.4028234663852886e38  # every float of a config reaches TensorFlow as float32

ACTIVATION_DOC = "A Keras activation by name, or `threshold` for builder's step layer (TLU)."

# The `type` of each kind of hidden layer, in the order messages list them.
LAYER_TYPES = ("dense", "dropout", "batch_normalization", "activation", "threshold")
MAX_HIDDEN_LAYERS = 64

# Categorical feature columns.
DEFAULT_MAX_CATEGORIES = 1_000  # a column's most frequent values kept; the rest read as unseen
MAX_CATEGORIES = 100_000
MAX_EMBEDDING_DIM = 1_024
