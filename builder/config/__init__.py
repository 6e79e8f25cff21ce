"""YAML (or JSON) config -> validated config objects.

The package splits the job by module, each importing only those listed before it:

- ``names``: the allow-lists and size limits a config may use.
- ``yaml_reader``: text -> plain data with PyYAML's safe loader (a config is plain data and can
  never import or run code), keeping the nodes for line numbers; duplicate keys and alias bombs
  are refused first.
- ``schema``: the pydantic models (``Config`` and its sections).
- ``messages``: a validation error -> one ``ConfigError`` line naming the key path, the rule,
  the received value and the file and line, e.g. ``model.layers[1].units must be a positive
  integer. Received: units=0 (configs/mlp.yaml, line 12)``.
- ``loading``: ``load_config``, ``parse_config``, ``validate_config``; the JSON Schema.

Checks raise ``builder.rules.rule_error``, as ``builder.search`` does. Import from
``builder.config`` itself; the names below are its public API.

Nothing here imports TensorFlow or Keras: ``builder validate`` and ``builder schema`` answer at
once because of it.
"""

from builder.config.loading import (
    json_schema,
    json_schema_text,
    load_config,
    parse_config,
    validate_config,
)
from builder.config.names import (
    ACTIVATION_DOC,
    ACTIVATIONS,
    CLASSIFICATION_LOSSES,
    INITIALIZERS,
    KERAS_ACTIVATIONS,
    LAYER_TYPES,
    LOSSES,
    MAX_HIDDEN_LAYERS,
    MAX_PARAMETERS,
    MAX_UNITS,
    MAX_YAML_NODES,
    METRICS,
    OPTIMIZERS,
)
from builder.config.schema import (
    LAYER_CLASSES,
    ActivationLayer,
    BatchNormalizationLayer,
    Config,
    DataConfig,
    DenseArgs,
    DenseLayer,
    DropoutLayer,
    EarlyStoppingConfig,
    HiddenBlock,
    Layer,
    ModelConfig,
    OptimizerConfig,
    OutputLayer,
    Regularizer,
    SplitConfig,
    ThresholdLayer,
    TrainingConfig,
    layer_tag,
    parameter_count,
)

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_DOC",
    "CLASSIFICATION_LOSSES",
    "INITIALIZERS",
    "KERAS_ACTIVATIONS",
    "LAYER_CLASSES",
    "LAYER_TYPES",
    "LOSSES",
    "MAX_HIDDEN_LAYERS",
    "MAX_PARAMETERS",
    "MAX_UNITS",
    "MAX_YAML_NODES",
    "METRICS",
    "OPTIMIZERS",
    "ActivationLayer",
    "BatchNormalizationLayer",
    "Config",
    "DataConfig",
    "DenseArgs",
    "DenseLayer",
    "DropoutLayer",
    "EarlyStoppingConfig",
    "HiddenBlock",
    "Layer",
    "ModelConfig",
    "OptimizerConfig",
    "OutputLayer",
    "Regularizer",
    "SplitConfig",
    "ThresholdLayer",
    "TrainingConfig",
    "json_schema",
    "json_schema_text",
    "layer_tag",
    "load_config",
    "parameter_count",
    "parse_config",
    "validate_config",
]
