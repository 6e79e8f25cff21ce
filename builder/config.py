"""YAML (or JSON) config -> validated config objects.

The schema is pydantic v2; YAML is read with PyYAML's safe loader only, so a config is plain data
and can never import or run code. Every error becomes one ``ConfigError`` line that names the key
path, the rule, the received value and the file and line, e.g.
``model.layers[1].units must be a positive integer. Received: units=0 (configs/mlp.yaml, line 12)``.

This module must not import TensorFlow or Keras: ``builder validate`` and ``builder schema`` answer
at once because of it.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from builder.errors import ConfigError
from builder.search import SPACE_TAGS, SearchSpace, TuneConfig, is_space, searchable

# Names a config may use. Allow-lists, not lookups: a config can never name arbitrary code.
# tests/test_config.py checks that every name resolves in Keras, so the lists cannot drift silently.
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
)  # fmt: skip
CLASSIFICATION_LOSSES = ("binary_crossentropy", "hinge", "squared_hinge")
METRICS = (
    "mae", "mse", "mape", "root_mean_squared_error", "mean_absolute_error",
    "mean_squared_error", "accuracy", "binary_accuracy", "auc", "precision", "recall",
)  # fmt: skip
INITIALIZERS = (
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
    "lecun_normal", "orthogonal", "random_normal", "random_uniform", "truncated_normal",
    "zeros", "ones",
)  # fmt: skip
# Mirrors builder.layers.GRADIENTS; duplicated so that this module stays free of Keras (a test
# checks that the two agree).
THRESHOLD_GRADIENTS = ("none", "straight_through", "sigmoid")

# Size limits, checked before any memory is allocated.
MAX_UNITS = 65_536
MAX_PARAMETERS = 50_000_000
MAX_YAML_NODES = 100_000  # after alias expansion: refuses "billion laughs"

ACTIVATION_DOC = "A Keras activation by name, or `threshold` for builder's step layer (TLU)."


def _did_you_mean(value: object, choices: tuple[str, ...] | list[str]) -> str:
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def _one_of(kind: str, choices: tuple[str, ...]):
    def check(value: str) -> str:
        if value not in choices:
            listed = ", ".join(choices)
            raise PydanticCustomError(
                "unknown_name",
                "must be a known {kind} ({listed})",
                {"kind": kind, "listed": listed, "hint": _did_you_mean(value, choices)},
            )
        return value

    return check


def _name(kind: str, choices: tuple[str, ...]) -> Any:
    from pydantic import AfterValidator

    return Annotated[
        str,
        AfterValidator(_one_of(kind, choices)),
        Field(json_schema_extra={"enum": list(choices)}),
    ]


Activation = _name("activation", ACTIVATIONS)
Initializer = _name("initializer", INITIALIZERS)
LossName = _name("loss", LOSSES)
MetricName = _name("metric", METRICS)
Units = Annotated[int, Field(gt=0, le=MAX_UNITS)]
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]


class _Strict(BaseModel):
    # strict: YAML gives real types, so "16" is not 16 and true is not 1.
    # defer_build: the validators are built once, for Config, on first use, rather than for
    # every class at import (~15 ms of `builder validate`'s 0.5 s budget; bench/README.md).
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)


class Regularizer(_Strict):
    """L1/L2 weight penalty, as ``keras.regularizers.L1L2``."""

    l1: Annotated[float, Field(ge=0.0)] = 0.0
    l2: Annotated[float, Field(ge=0.0)] = 0.0


class _DenseArgs(_Strict):
    units: Units
    activation: Activation = Field("linear", description=ACTIVATION_DOC)
    use_bias: bool = True
    kernel_initializer: Initializer = "glorot_uniform"
    bias_initializer: Initializer = "zeros"
    kernel_regularizer: Regularizer | None = None
    bias_regularizer: Regularizer | None = None


class DenseLayer(_DenseArgs):
    """A fully connected layer (``keras.layers.Dense``)."""

    type: Literal["dense"]
    units: searchable(Units, int)  # type: ignore[valid-type]
    activation: searchable(Activation, str) = Field(  # type: ignore[valid-type]
        "linear", description=ACTIVATION_DOC
    )


class DropoutLayer(_Strict):
    """``keras.layers.Dropout``."""

    type: Literal["dropout"]
    rate: searchable(Rate, float)  # type: ignore[valid-type]


class BatchNormalizationLayer(_Strict):
    """``keras.layers.BatchNormalization``."""

    type: Literal["batch_normalization"]
    momentum: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.99
    epsilon: Annotated[float, Field(gt=0.0)] = 1e-3


class ActivationLayer(_Strict):
    """``keras.layers.Activation`` (or builder's Threshold for ``threshold``)."""

    type: Literal["activation"]
    activation: Activation = Field(description=ACTIVATION_DOC)


class ThresholdLayer(_Strict):
    """builder's step layer (TLU): 1 where the input >= threshold, else 0."""

    type: Literal["threshold"]
    threshold: float = 0.0
    gradient: Literal["none", "straight_through", "sigmoid"] = Field(
        "sigmoid", description="Backward pass: the forward pass is always the exact step."
    )
    slope: Annotated[float, Field(gt=0.0)] = 1.0


LAYER_TYPES = ("dense", "dropout", "batch_normalization", "activation", "threshold")


def _layer_tag(value: Any) -> str | None:
    return value.get("type") if isinstance(value, dict) else getattr(value, "type", None)


Layer = Annotated[
    Annotated[DenseLayer, Tag("dense")]
    | Annotated[DropoutLayer, Tag("dropout")]
    | Annotated[BatchNormalizationLayer, Tag("batch_normalization")]
    | Annotated[ActivationLayer, Tag("activation")]
    | Annotated[ThresholdLayer, Tag("threshold")],
    Discriminator(_layer_tag),
]


class OutputLayer(_DenseArgs):
    """The output layer: a Dense layer named ``output``."""

    units: Units = 1


MAX_HIDDEN_LAYERS = 64


class HiddenBlock(_Strict):
    """Hidden layers as a count and one shape: the short form of ``layers``, for tuning.

    Each hidden layer is a Dense layer followed, when ``dropout`` is above 0, by a Dropout
    layer. Every key may be a search space; a tuned block gives each layer its own units,
    activation and dropout.
    """

    layers: searchable(Annotated[int, Field(ge=0, le=MAX_HIDDEN_LAYERS)], int)  # type: ignore[valid-type]
    units: searchable(Units, int)  # type: ignore[valid-type]
    activation: searchable(Activation, str) = Field(  # type: ignore[valid-type]
        "relu", description=ACTIVATION_DOC
    )
    dropout: searchable(Rate, float) = 0.0  # type: ignore[valid-type]


class ModelConfig(_Strict):
    """The network: hidden layers in order, then the output layer."""

    layers: list[Layer] = Field(default_factory=list)
    hidden: HiddenBlock | None = Field(
        None, description="Instead of layers: a count of alike hidden layers (for tuning)."
    )
    output: OutputLayer = Field(default_factory=OutputLayer)

    @model_validator(mode="after")
    def _expand_hidden(self) -> ModelConfig:
        block = self.hidden
        if block is None:
            return self
        if self.layers:
            raise PydanticCustomError(
                "hidden_and_layers",
                "must not be given with model.layers: hidden is their short form",
                {"loc": "hidden", "received": f"{len(self.layers)} layers and a hidden block"},
            )
        values = (block.layers, block.units, block.activation, block.dropout)
        if not any(is_space(v) for v in values):
            # Without search spaces the block is only shorthand: write it out as layers.
            self.layers = []
            for _ in range(block.layers):
                self.layers.append(
                    DenseLayer(type="dense", units=block.units, activation=block.activation)
                )
                if block.dropout > 0:
                    self.layers.append(DropoutLayer(type="dropout", rate=block.dropout))
            self.hidden = None
        return self


class SplitConfig(_Strict):
    """Seeded random split of the CSV rows into train, validation and test."""

    validation: Rate = 0.15
    test: Rate = 0.15
    seed: int = 42

    @model_validator(mode="after")
    def _leaves_training_data(self) -> SplitConfig:
        if self.validation + self.test >= 1.0:
            raise PydanticCustomError(
                "split_sum",
                "must leave rows for training (validation + test must be below 1)",
                {"loc": "test", "received": f"validation={self.validation}, test={self.test}"},
            )
        return self


class DataConfig(_Strict):
    """Where the data is and which columns are features and target."""

    path: str | None = Field(None, description="CSV path, relative to the config file.")
    features: Annotated[list[str], Field(min_length=1)]
    target: str
    split: SplitConfig = Field(default_factory=SplitConfig)
    normalize: Literal["zscore", "none"] = Field(
        "zscore", description="Input normalization inside the model, fitted on the training split."
    )
    missing: Literal["error", "drop", "mean"] = Field(
        "error", description="Empty cells: an error, drop the row, or fill with the training mean."
    )
    streaming: bool | Literal["auto"] = Field(
        "auto",
        description="Read the CSV in chunks through tf.data, never whole; auto: above a size.",
    )

    @field_validator("features")
    @classmethod
    def _unique(cls, features: list[str]) -> list[str]:
        seen = set()
        for name in features:
            if name in seen:
                raise PydanticCustomError(
                    "duplicate", "must not repeat a column", {"received": f"{name!r} twice"}
                )
            seen.add(name)
        return features

    @model_validator(mode="after")
    def _target_not_a_feature(self) -> DataConfig:
        if self.target in self.features:
            raise PydanticCustomError(
                "target_is_feature",
                "must not also be a feature",
                {"loc": "target", "received": f"target={self.target!r}"},
            )
        return self


class OptimizerConfig(_Strict):
    """A Keras optimizer by name, with its learning rate and schedule."""

    name: Literal[OPTIMIZERS] = "adam"  # type: ignore[valid-type]
    learning_rate: searchable(Annotated[float, Field(gt=0.0, le=10.0)], float) = 0.01  # type: ignore[valid-type]
    schedule: Literal["constant", "cosine"] = Field(
        "cosine", description="cosine: decay to 0 over the configured epochs (CosineDecay)."
    )


class EarlyStoppingConfig(_Strict):
    """``keras.callbacks.EarlyStopping`` on the validation loss."""

    patience: Annotated[int, Field(ge=0)] = 20
    min_delta: Annotated[float, Field(ge=0.0)] = 0.0
    restore_best_weights: bool = True


class TrainingConfig(_Strict):
    """How to train: optimizer, loss, metrics, epochs, batches, seed."""

    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    loss: LossName = "mse"
    metrics: list[MetricName] = Field(default_factory=lambda: ["mae"])
    epochs: Annotated[int, Field(gt=0, le=100_000)] = 100
    batch_size: searchable(Annotated[int, Field(gt=0, le=1_000_000)], int) = 256  # type: ignore[valid-type]
    steps_per_execution: Annotated[int, Field(gt=0, le=10_000)] = Field(
        32, description="Batches per call into TensorFlow; 1 (and the default) under distribution."
    )
    early_stopping: EarlyStoppingConfig | None = Field(default_factory=EarlyStoppingConfig)
    distribution: Literal["none", "mirrored", "multi_worker"] = Field(
        "none",
        description="tf.distribute strategy: mirrored (devices of one machine) or multi_worker "
        "(machines named by TF_CONFIG). batch_size is the global batch.",
    )
    target_scaling: Literal["zscore", "none"] = Field(
        "zscore",
        description="Regression: standardize the target for training; the model un-scales it.",
    )
    seed: int = 42

    @model_validator(mode="after")
    def _one_step_per_call_when_distributed(self) -> TrainingConfig:
        # Keras 3.15 under tf.distribute fails on several steps per call ("You must feed a
        # value for placeholder tensor ..."), so distributed training runs one step per call.
        if self.distribution != "none":
            if "steps_per_execution" in self.model_fields_set and self.steps_per_execution != 1:
                raise PydanticCustomError(
                    "distributed_steps",
                    "must be 1 with distribution {distribution}",
                    {
                        "distribution": self.distribution,
                        "loc": "steps_per_execution",
                        "received": f"steps_per_execution={self.steps_per_execution}",
                    },
                )
            self.steps_per_execution = 1
        return self


class Config(_Strict):
    """A whole builder config."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
    task: Literal["regression", "classification"] | None = Field(
        None, description="Inferred from the loss and output activation when not given."
    )
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    tune: TuneConfig | None = Field(
        None, description="How builder tune searches the config's search spaces."
    )

    _source: Path | None = PrivateAttr(default=None)
    _node: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _resolve_task_and_check_size(self) -> Config:
        if self.task is None:
            out = self.model.output.activation
            classification = self.training.loss in CLASSIFICATION_LOSSES or out in (
                "sigmoid",
                "threshold",
            )
            self.task = "classification" if classification else "regression"
        params = parameter_count(self)
        if params > MAX_PARAMETERS:
            raise PydanticCustomError(
                "too_large",
                "must have at most {limit} trainable parameters",
                {"limit": f"{MAX_PARAMETERS:,}", "loc": "model", "received": f"{params:,}"},
            )
        if self.tune is not None:
            from builder.search import objective_names

            names = objective_names(self.training.metrics)
            if self.tune.objective not in names:
                raise PydanticCustomError(
                    "objective",
                    "must be one of {names}",
                    {
                        "names": ", ".join(names),
                        "loc": ("tune", "objective"),
                        "received": f"objective={self.tune.objective!r}",
                        "hint": _did_you_mean(self.tune.objective, names),
                    },
                )
            if self.tune.objective.startswith("val_") and self.data.split.validation == 0:
                raise PydanticCustomError(
                    "objective",
                    "needs a validation split (data.split.validation is 0)",
                    {
                        "loc": ("tune", "objective"),
                        "received": f"objective={self.tune.objective!r}",
                    },
                )
        return self

    @property
    def source(self) -> Path | None:
        """The file this config was read from, if any."""
        return self._source

    def where(self, *loc: str | int) -> str:
        """`` (file, line N)`` for a key path, to end a message about this config."""
        if self._source is None:
            return ""
        line = _line(self._node, loc, key_line=False) if self._node is not None else None
        return f" ({self._source}, line {line})" if line else f" ({self._source})"

    def check_data_path(self) -> Path:
        """The resolved CSV path, checked to be an existing file.

        Raises:
            ConfigError: no path is given, or it is missing or a directory.
        """
        path = self.data_path()
        if path is None:
            raise ConfigError(
                f"data.path is required to read data (or pass --data CSV){self.where('data')}"
            )
        if not path.exists():
            rule = "must name an existing file"
        elif path.is_dir():
            rule = "must name a file, not a directory"
        else:
            return path
        raise ConfigError(
            f"data.path {rule}. Received: path={self.data.path!r}, resolved to {path}"
            f"{self.where('data', 'path')}"
        )

    def data_path(self) -> Path | None:
        """The CSV path, resolved relative to the config file."""
        if self.data.path is None:
            return None
        path = Path(self.data.path).expanduser()
        if not path.is_absolute() and self._source is not None:
            path = self._source.parent / path
        return path


def parameter_count(config: Config) -> int:
    """Trainable parameters the config implies, computed without building the model."""
    width = len(config.data.features)
    total = 0
    layers: list[Any] = list(config.model.layers)
    block = config.model.hidden
    if block is not None:  # a tuned block: count its largest network
        layers += [DenseLayer.model_construct(units=block.units, use_bias=True)] * _largest(
            block.layers
        )
    for layer in [*layers, config.model.output]:
        if isinstance(layer, _DenseArgs):
            units = _largest(layer.units)
            total += width * units + (units if layer.use_bias else 0)
            width = units
        elif isinstance(layer, BatchNormalizationLayer):
            total += 2 * width
    return total


def _largest(value: Any) -> Any:
    return value.largest() if isinstance(value, SearchSpace) else value


# --------------------------------------------------------------------------------------------
# Reading


def load_config(path: str | Path) -> Config:
    """Read and validate a config file (YAML, or JSON, which YAML reads too).

    Args:
        path: the config file.

    Returns:
        The validated config; relative data paths resolve against the file's folder.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, or breaks a rule.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist.")
    if path.is_dir():
        raise ConfigError(f"config file {path} must be a file. Received: a directory")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path} must be UTF-8 text. Received: byte 0x{raw[err.start]:02x} "
            f"at offset {err.start}"
        ) from None
    config = parse_config(text, source=path)
    return config


def parse_config(text: str, source: Path | str | None = None) -> Config:
    """Validate config text; ``source`` names the file in messages and anchors relative paths."""
    where = str(source) if source is not None else "<config>"
    data, node = _read_yaml(text, where)
    return validate_config(data, node=node, source=source)


def validate_config(
    data: Any, *, node: yaml.Node | None = None, source: Path | str | None = None
) -> Config:
    """Validate already-parsed config data (a dict), mapping errors to YAML lines when known."""
    where = str(source) if source is not None else "<config>"
    if not isinstance(data, dict):
        kind = "an empty document" if data is None else f"a {type(data).__name__}"
        raise ConfigError(
            f"{where}: the top level must be a mapping with keys name, data, model, training. "
            f"Received: {kind}"
        )
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, data, node, where)) from None
    if source is not None:
        config._source = Path(source)
    config._node = node
    return config


class _Loader(yaml.SafeLoader):
    """The safe loader; kept as a subclass so nothing is registered on PyYAML's global one."""


# YAML 1.1 reads 1e-4 as a string (it wants 1.0e-4); learning rates are written that way, so
# read them as YAML 1.2 and JSON do. Exponent floats only: everything else keeps 1.1 rules.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _read_yaml(text: str, where: str) -> tuple[Any, yaml.Node | None]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(
                f"{where} is empty: a config is a mapping with keys name, data, model, training."
            )
        _check_nodes(node, where)
        data = loader.construct_document(node)
    except yaml.constructor.ConstructorError as err:
        mark = err.problem_mark or err.context_mark
        tag = getattr(err, "problem", "") or ""
        raise ConfigError(
            f"{where}: YAML tags that build Python objects or other types are not allowed; "
            f"a config is plain data. Received: {tag.strip()}{_at(mark)}"
        ) from None
    except yaml.MarkedYAMLError as err:
        problem = (err.problem or "syntax error").strip()
        context = f"; {err.context.strip()}{_at(err.context_mark)}" if err.context else ""
        raise ConfigError(
            f"{where} is not valid YAML: {problem}{_at(err.problem_mark)}{context}"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{where} is not valid YAML: {err}") from None
    finally:
        loader.dispose()
    return data, node


def _at(mark: Any) -> str:
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def _check_nodes(root: yaml.Node, where: str) -> None:
    """Refuse alias bombs and duplicate keys before anything is constructed.

    Aliases share nodes, so the composed tree stays small while its expansion can be
    exponential; counting the expansion with memoisation is cheap and bounded.
    """
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        sizes[key] = 1  # a recursive alias counts once instead of looping
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode):
                    if k.value in seen:
                        raise ConfigError(
                            f"{where}: key '{k.value}' appears twice in one mapping "
                            f"(line {k.start_mark.line + 1}; first on line {seen[k.value]})"
                        )
                    seen[k.value] = k.start_mark.line + 1
                total += size(k) + size(v)
                if total > MAX_YAML_NODES:
                    break
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item)
                if total > MAX_YAML_NODES:
                    break
        sizes[key] = total
        if total > MAX_YAML_NODES:
            raise ConfigError(
                f"{where}: the document must expand to at most {MAX_YAML_NODES:,} YAML nodes "
                f"(aliases included). Received: more than that{_at(node.start_mark)}"
            )
        return total

    size(root)


# --------------------------------------------------------------------------------------------
# Error messages


_RULES = {
    "missing": "is required",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "finite_number": "must be a finite number",
    "string_pattern_mismatch": (
        "must be 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit"
    ),
}


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "config"


def _clean_loc(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Drop the union tags pydantic puts in locations (``layers.1.dense.units``)."""
    out: list[Any] = []
    current = data
    for part in loc:
        if part in SPACE_TAGS and not (isinstance(current, dict) and part in current):
            continue  # the value-or-search-space tag of a searchable key
        if (
            isinstance(current, dict)
            and isinstance(part, str)
            and part not in current
            and part in LAYER_TYPES
            and current.get("type") == part
        ):
            continue
        out.append(part)
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
        else:
            current = None
    return tuple(out)


def _line(node: yaml.Node | None, loc: tuple[Any, ...], key_line: bool) -> int | None:
    """The YAML line of a location: the value's line, or the key's for unknown keys."""
    line = None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            found = None
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    found = (k, v)
                    break
            if found is None:
                return line
            node = found[0] if key_line and part == loc[-1] else found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _rule(error: dict[str, Any], integer: bool = False) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        words = {
            "greater_than": ("greater than", "gt"),
            "greater_than_equal": ("at least", "ge"),
            "less_than": ("less than", "lt"),
            "less_than_equal": ("at most", "le"),
        }[kind]
        bound = ctx.get(words[1])
        if kind == "greater_than" and bound == 0:
            return "must be a positive integer" if integer else "must be greater than 0"
        return f"must be {words[0]} {bound}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}"
    if kind == "extra_forbidden":
        return "is not a known key"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        verb = "must be" if kind == "union_tag_invalid" else "is required:"
        return f"{verb} one of " + ", ".join(f"'{t}'" for t in LAYER_TYPES)
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return f"must have at least {n} item{'s' if n != 1 else ''}"
    if kind in _RULES:
        return _RULES[kind]
    return error["msg"]


def _allowed_keys(data: Any, loc: tuple[Any, ...]) -> list[str]:
    """Known keys of the mapping that holds an unknown key, for did-you-mean."""
    model = _model_at(data, loc)
    return list(model.model_fields) if model is not None else []


def _is_int_field(data: Any, loc: tuple[Any, ...]) -> bool:
    model = _model_at(data, loc)
    field = model.model_fields.get(loc[-1]) if model is not None and loc else None
    return field is not None and _mentions_int(field.annotation)


def _mentions_int(annotation: Any) -> bool:
    # Searchable keys nest the int inside Annotated and a union with the search space.
    return annotation is int or any(_mentions_int(arg) for arg in _args(annotation))


def _args(annotation: Any) -> tuple[Any, ...]:
    import typing

    return typing.get_args(annotation)


def _model_at(data: Any, loc: tuple[Any, ...]) -> Any:
    """The pydantic model class of the mapping that holds ``loc[-1]``."""
    model: Any = Config
    current = data
    for part in loc[:-1]:
        if isinstance(part, int):
            current = current[part] if isinstance(current, list) else None
            tag = _layer_tag(current) if current is not None else None
            model = {
                "dense": DenseLayer,
                "dropout": DropoutLayer,
                "batch_normalization": BatchNormalizationLayer,
                "activation": ActivationLayer,
                "threshold": ThresholdLayer,
            }.get(tag)
            continue
        current = current.get(part) if isinstance(current, dict) else None
        field = model.model_fields.get(part) if model is not None else None
        model = _model_of(field.annotation) if field is not None else None
    return model


def _model_of(annotation: Any) -> Any:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _describe(err: ValidationError, data: Any, node: yaml.Node | None, where: str) -> str:
    errors = err.errors(include_url=False)
    # A misspelt key also makes the real one "missing": report the misspelling, it is the cause.
    errors.sort(key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = _clean_loc(tuple(first["loc"]), data)
    ctx = first.get("ctx") or {}
    if "loc" in ctx:  # model-level checks name the field they are about
        loc = (*loc, *ctx["loc"]) if isinstance(ctx["loc"], tuple) else (*loc, ctx["loc"])
    kind = first["type"]
    rule = _rule(first, integer=_is_int_field(data, loc))
    message = f"{_format_loc(loc)} {rule}."
    hint = ctx.get("hint", "")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(data, loc)
        hint = _did_you_mean(loc[-1], allowed)
        if allowed:
            hint += " Known keys: " + ", ".join(allowed) + "."
        message = f"{_format_loc(loc)} {rule}.{hint}"
    elif kind == "literal_error":
        expected = [
            s.strip(" '") for s in str(ctx.get("expected", "")).replace(" or ", ",").split(",")
        ]
        hint = _did_you_mean(first.get("input"), expected)
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        hint = _did_you_mean(ctx.get("tag"), LAYER_TYPES)
        loc = (*loc, "type")
        message = f"{_format_loc(loc)} {rule}."

    if kind not in ("missing", "extra_forbidden", "union_tag_not_found"):
        if "received" in ctx:
            message += f" Received: {ctx['received']}"
        else:
            key = _format_loc(loc[-2:]) if isinstance(loc[-1], int) else loc[-1]
            value = first.get("input")
            if kind == "union_tag_invalid":
                value = ctx.get("tag")
            shown = repr(value)
            if len(shown) > 60:
                shown = shown[:57] + "..."
            message += f" Received: {key}={shown}"
        if hint:
            message += f".{hint}" if not message.endswith(".") else hint
    line = _line(node, loc, key_line=kind == "extra_forbidden")
    message += f" ({where}, line {line})" if line else f" ({where})"
    if len(errors) > 1:
        message += f" [and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''}]"
    return message


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the config, for editors (autocomplete and checks)."""
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "builder config"
    return schema


def json_schema_text() -> str:
    """``json_schema()`` as the text of ``builder.SCHEMA_FILE`` (what ``builder schema`` prints).

    Regenerate the shipped file after changing the schema::

        python -c "import builder as b, builder.config as c
        b.SCHEMA_FILE.write_text(c.json_schema_text())"
    """
    return json.dumps(json_schema(), indent=2) + "\n"
