"""The config schema: pydantic models of every section, and what follows from them.

Validation is strict (YAML gives real types, so ``"16"`` is not 16) and forbids unknown keys.
Checks that span several keys raise ``builder.rules.rule_error``; ``builder.config.messages``
turns every failure into one located line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from builder.config.names import (
    ACTIVATION_DOC,
    ACTIVATIONS,
    BINARY_METRICS,
    CLASSIFICATION_LOSSES,
    DEFAULT_MAX_CATEGORIES,
    DEFAULT_STEPS,
    FLOAT32_MAX,
    INITIALIZERS,
    LOSSES,
    MAX_CATEGORIES,
    MAX_EMBEDDING_DIM,
    MAX_EPOCHS,
    MAX_HIDDEN_LAYERS,
    MAX_PARAMETERS,
    MAX_PATH_BYTES,
    MAX_PATH_PART_BYTES,
    MAX_SEED,
    MAX_STEPS,
    MAX_UNITS,
    METRICS,
    MIN_EPOCH_STEPS,
    OPTIMIZERS,
)
from builder.config.yaml_reader import line_of
from builder.errors import ConfigError
from builder.rules import as_float32, did_you_mean, number_text, path_rule, rule_error
from builder.search import SearchSpace, TuneConfig, is_space, objective_names, searchable


def _one_of(kind: str, choices: tuple[str, ...]):
    def check(value: str) -> str:
        if value not in choices:
            listed = ", ".join(choices)
            raise rule_error(
                f"must be a known {kind} ({listed})", hint=did_you_mean(value, choices)
            )
        return value

    return check


def _name(kind: str, choices: tuple[str, ...]) -> Any:
    return Annotated[
        str,
        AfterValidator(_one_of(kind, choices)),
        Field(json_schema_extra={"enum": list(choices)}),
    ]


_BOUND_WORDS = {
    "gt": ("greater than", lambda x, b: x > b),
    "ge": ("at least", lambda x, b: x >= b),
    "lt": ("less than", lambda x, b: x < b),
    "le": ("at most", lambda x, b: x <= b),
}


def _float32_check(bounds: dict[str, float]):
    def check(value: float) -> float:
        single = as_float32(value)
        if single is None:
            raise rule_error(
                f"must be finite as a 32-bit float (at most {FLOAT32_MAX:.7g} in magnitude)"
            )
        for key, bound in bounds.items():
            words, holds = _BOUND_WORDS[key]
            if not holds(single, bound):
                raise rule_error(
                    f"must be {words} {bound} as a 32-bit float, which is what it becomes",
                    hint=f" It becomes {single!r}.",
                )
        return value

    return check


def Float32(**bounds: float) -> Any:  # noqa: N802 - a type, as the annotations read
    """A float field: within ``bounds`` (gt, ge, lt, le) both as given and as float32.

    Every float of a config reaches TensorFlow as a 32-bit float, so ``1e300`` (inf there) is
    refused, and so is a dropout rate of ``0.99999999999`` (1.0 there) or a learning rate of
    ``1e-50`` (0.0 there).
    """
    return Annotated[float, Field(**bounds), AfterValidator(_float32_check(bounds))]


def _seed(value: int) -> int:
    if not 0 <= value <= MAX_SEED:
        raise rule_error(
            f"must be an integer from 0 to {MAX_SEED:,} (2**32 - 1, the range "
            "keras.utils.set_random_seed and numpy's seeding accept)"
        )
    return value


Seed = Annotated[
    int,
    AfterValidator(_seed),
    Field(json_schema_extra={"minimum": 0, "maximum": MAX_SEED}),
]


def _check_path_text(path: str | None) -> str | None:
    if path is None:
        return None
    if "\0" in path:
        raise rule_error(
            "must not contain a NUL byte", received=f"path={path[:40]!r}... with a NUL byte"
        )
    try:
        size = len(os.fsencode(path))
    except UnicodeError:
        raise rule_error(
            "must be valid UTF-8 text", received="a path with a lone surrogate"
        ) from None
    if size > MAX_PATH_BYTES:
        raise rule_error(
            f"must be at most {MAX_PATH_BYTES:,} bytes (the system's path limit)",
            received=f"a path of {size:,} bytes",
        )
    longest = max((len(os.fsencode(part)) for part in path.split("/")), default=0)
    if longest > MAX_PATH_PART_BYTES:
        raise rule_error(
            f"must have no file or folder name over {MAX_PATH_PART_BYTES} bytes "
            "(the system's name limit)",
            received=f"a name of {longest:,} bytes",
        )
    return path


Activation = _name("activation", ACTIVATIONS)
Initializer = _name("initializer", INITIALIZERS)
LossName = _name("loss", LOSSES)
MetricName = _name("metric", METRICS)
Units = Annotated[int, Field(gt=0, le=MAX_UNITS)]
Rate = Float32(ge=0.0, lt=1.0)
PositiveFloat32 = Float32(gt=0.0)


class _Strict(BaseModel):
    # strict: YAML gives real types, so "16" is not 16 and true is not 1.
    # defer_build: the validators are built once, for Config, on first use, rather than for
    # every class at import, which `builder validate`'s latency budget cannot afford
    # (bench/README.md, command latency).
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)


class Regularizer(_Strict):
    """L1/L2 weight penalty, as ``keras.regularizers.L1L2``."""

    l1: Float32(ge=0.0) = 0.0  # type: ignore[valid-type]
    l2: Float32(ge=0.0) = 0.0  # type: ignore[valid-type]


class DenseArgs(_Strict):
    """The keys of a Dense layer, shared by hidden dense layers and the output layer."""

    units: Units
    activation: Activation = Field("linear", description=ACTIVATION_DOC)
    use_bias: bool = True
    kernel_initializer: Initializer = "glorot_uniform"
    bias_initializer: Initializer = "zeros"
    kernel_regularizer: Regularizer | None = None
    bias_regularizer: Regularizer | None = None


class DenseLayer(DenseArgs):
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
    momentum: Float32(gt=0.0, lt=1.0) = 0.99  # type: ignore[valid-type]
    epsilon: Float32(gt=0.0) = 1e-3  # type: ignore[valid-type]


class ActivationLayer(_Strict):
    """``keras.layers.Activation`` (or builder's Threshold for ``threshold``)."""

    type: Literal["activation"]
    activation: Activation = Field(description=ACTIVATION_DOC)


class ThresholdLayer(_Strict):
    """builder's step layer (TLU): 1 where the input >= threshold, else 0."""

    type: Literal["threshold"]
    threshold: Float32() = 0.0  # type: ignore[valid-type]
    gradient: Literal["none", "straight_through", "sigmoid"] = Field(
        "sigmoid", description="Backward pass: the forward pass is always the exact step."
    )
    slope: Float32(gt=0.0) = 1.0  # type: ignore[valid-type]


def layer_tag(value: Any) -> str | None:
    """The ``type`` of a hidden layer, raw (a mapping) or parsed; ``None`` when it has none."""
    return value.get("type") if isinstance(value, dict) else getattr(value, "type", None)


Layer = Annotated[
    Annotated[DenseLayer, Tag("dense")]
    | Annotated[DropoutLayer, Tag("dropout")]
    | Annotated[BatchNormalizationLayer, Tag("batch_normalization")]
    | Annotated[ActivationLayer, Tag("activation")]
    | Annotated[ThresholdLayer, Tag("threshold")],
    Discriminator(layer_tag),
]

# The model class of each hidden layer ``type`` (builder.config.names.LAYER_TYPES).
LAYER_CLASSES: dict[str, type[BaseModel]] = {
    "dense": DenseLayer,
    "dropout": DropoutLayer,
    "batch_normalization": BatchNormalizationLayer,
    "activation": ActivationLayer,
    "threshold": ThresholdLayer,
}


class OutputLayer(DenseArgs):
    """The output layer: a Dense layer named ``output``."""

    units: Units = 1


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
    output: OutputLayer | None = Field(
        None,
        description="The output layer. Default: one linear unit for regression; for "
        "classification, chosen from the classes in the data (one sigmoid unit for two, one "
        "softmax unit per class for more).",
    )

    @model_validator(mode="after")
    def _expand_hidden(self) -> ModelConfig:
        block = self.hidden
        if block is None:
            return self
        if self.layers:
            raise rule_error(
                "must not be given with model.layers: hidden is their short form",
                loc="hidden",
                received=f"{len(self.layers)} layers and a hidden block",
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
    seed: Seed = 42

    @model_validator(mode="after")
    def _leaves_training_data(self) -> SplitConfig:
        if self.test == 0:
            raise rule_error(
                "must be above 0: every run scores its test split next to the baselines",
                loc="test",
                received="test=0",
            )
        if self.validation + self.test >= 1.0:
            raise rule_error(
                "must leave rows for training (validation + test must be below 1)",
                loc="test",
                received=f"validation={self.validation}, test={self.test}",
            )
        return self


class FeatureConfig(_Strict):
    """One feature column: its name and, optionally, its type and how a categorical one is encoded.

    A plain name in ``data.features`` is ``{name: NAME}``. Without ``type``, a column whose values
    are all numbers is numeric and any other is categorical (decided on the file when training;
    the run's ``config.yaml`` records the result). Integer columns with few values stay numeric
    unless declared categorical.
    """

    name: str
    type: Literal["numeric", "categorical"] | None = Field(
        None, description="numeric or categorical; inferred from the file when not given."
    )
    encoding: Literal["one_hot", "embedding"] = Field(
        "one_hot", description="Categorical: one 0/1 input per category, or a learned embedding."
    )
    embedding_dim: Annotated[int, Field(gt=0, le=MAX_EMBEDDING_DIM)] | None = Field(
        None,
        description="Embedding width (encoding: embedding); default min(50, round(1.6 * V**0.56)) "
        "for V categories.",
    )
    max_categories: Annotated[int, Field(gt=0, le=MAX_CATEGORIES)] = Field(
        DEFAULT_MAX_CATEGORIES,
        description="Categorical: the most frequent training values kept; the rest read as unseen.",
    )
    min_count: Annotated[int, Field(gt=0)] = Field(
        1, description="Categorical: values seen fewer times in training read as unseen."
    )

    @field_validator("name")
    @classmethod
    def _a_name(cls, name: str) -> str:
        if not name.strip():
            raise rule_error("must name a column (a non-empty header name)")
        return name

    @model_validator(mode="after")
    def _options_fit_the_type(self) -> FeatureConfig:
        if self.type == "numeric":
            # Compared with the defaults, not with the keys given: a dumped config gives all.
            options = {
                "encoding": self.encoding != "one_hot",
                "embedding_dim": self.embedding_dim is not None,
                "max_categories": self.max_categories != DEFAULT_MAX_CATEGORIES,
                "min_count": self.min_count != 1,
            }
            given = [key for key, differs in options.items() if differs]
            if given:
                raise rule_error(
                    "applies only to categorical columns",
                    loc=given[0],
                    received=f"type=numeric with {given[0]}={getattr(self, given[0])!r}",
                )
        if self.embedding_dim is not None and self.encoding != "embedding":
            raise rule_error(
                "applies only with encoding: embedding",
                loc="embedding_dim",
                received=f"encoding={self.encoding}",
            )
        return self

    def shown(self) -> str | dict[str, Any]:
        """The entry as a config writes it: the bare name when nothing else is set."""
        given = self.model_dump(exclude_unset=True, exclude_defaults=True)
        return self.name if set(given) <= {"name"} else given


def _named(value: Any) -> Any:
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, dict):
        raise rule_error(
            "must be a column name, or a mapping with its name and options "
            "({name: zip, type: categorical})",
            received=repr(value),
        )
    return value


# A feature entry: a column name, or a mapping with its name and options.
FeatureEntry = Annotated[
    FeatureConfig,
    BeforeValidator(_named),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "minLength": 1}, FeatureConfig.model_json_schema()]}
    ),
]


class DataConfig(_Strict):
    """Where the data is and which columns are features and target."""

    path: str | None = Field(None, description="CSV path, relative to the config file.")
    # A name or a mapping; every entry is a FeatureConfig once validated.
    features: Annotated[list[FeatureEntry], Field(min_length=1)]
    target: str
    split: SplitConfig = Field(default_factory=SplitConfig)
    normalize: Literal["zscore", "none"] = Field(
        "zscore", description="Input normalization inside the model, fitted on the training split."
    )
    missing: Literal["error", "drop", "mean"] = Field(
        "error",
        description="Empty cells: an error, drop the row, or fill with the training mean (the "
        "most frequent value of a categorical column).",
    )
    unknown: Literal["average", "error"] = Field(
        "average",
        description="A categorical value not seen in training: encoded as the average training "
        "value (its categories' frequencies), or an error naming the column, value and line.",
    )
    streaming: bool | Literal["auto"] = Field(
        "auto",
        description="Read the CSV in chunks through tf.data, never whole; auto: above a size.",
    )

    @field_validator("path")
    @classmethod
    def _path_text(cls, path: str | None) -> str | None:
        return _check_path_text(path)

    @field_validator("features")
    @classmethod
    def _unique(cls, features: list[FeatureConfig]) -> list[FeatureConfig]:
        seen = set()
        for feature in features:
            if feature.name in seen:
                raise rule_error("must not repeat a column", received=f"{feature.name!r} twice")
            seen.add(feature.name)
        return features

    @model_validator(mode="after")
    def _target_not_a_feature(self) -> DataConfig:
        if self.target in self.feature_names:
            raise rule_error(
                "must not also be a feature", loc="target", received=f"target={self.target!r}"
            )
        return self

    @property
    def feature_names(self) -> list[str]:
        """The feature columns' names, in order."""
        return [feature.name for feature in self.features]

    def feature(self, name: str) -> FeatureConfig:
        """The feature column called ``name``."""
        return next(feature for feature in self.features if feature.name == name)

    @property
    def categorical(self) -> list[str]:
        """The features declared (or resolved) categorical."""
        return [f.name for f in self.features if f.type == "categorical"]

    @property
    def resolved(self) -> bool:
        """Whether every feature has a type (as in a run's config)."""
        return all(feature.type is not None for feature in self.features)


class OptimizerConfig(_Strict):
    """A Keras optimizer by name, with its learning rate and schedule."""

    name: Literal[OPTIMIZERS] = "adam"  # type: ignore[valid-type]
    learning_rate: searchable(Float32(gt=0.0, le=10.0), float) = 0.01  # type: ignore[valid-type]
    schedule: Literal["constant", "cosine"] = Field(
        "cosine", description="cosine: decay to 0 over the configured epochs (CosineDecay)."
    )


class EarlyStoppingConfig(_Strict):
    """``keras.callbacks.EarlyStopping`` on the validation loss."""

    patience: Annotated[int, Field(ge=0)] = 20
    min_delta: Float32(ge=0.0) = 0.0  # type: ignore[valid-type]
    restore_best_weights: bool = True


def _class_weight(value: Any) -> Any:
    # One rule for the union (pydantic would give one message per member).
    if value is None or value == "balanced":
        return value
    rule = "must be balanced, or a mapping of class label to a weight above 0"
    if not isinstance(value, dict) or not value:
        raise rule_error(rule, received=f"class_weight={value!r}")
    found: dict[str, float] = {}
    for key, weight in value.items():
        # YAML reads `{0: 2.0}` with an int key; labels are text, numbers written as the data's
        # labels are (2, not 2.0).
        number = isinstance(key, (int, float)) and not isinstance(key, bool)
        label = number_text(key) if number else key
        single = as_float32(weight) if isinstance(weight, (int, float)) else None
        if not isinstance(label, str) or isinstance(weight, bool) or not single or single <= 0:
            raise rule_error(rule, received=f"class_weight[{key!r}]={weight!r}")
        found[label] = float(weight)
    return found


ClassWeight = Annotated[
    Any,
    BeforeValidator(_class_weight),
    WithJsonSchema(
        {
            "anyOf": [
                {"const": "balanced"},
                {
                    "type": "object",
                    "additionalProperties": {"type": "number", "exclusiveMinimum": 0},
                },
                {"type": "null"},
            ]
        }
    ),
]


class TrainingConfig(_Strict):
    """How to train: optimizer, loss, metrics, epochs, batches, seed."""

    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    loss: LossName | None = Field(
        None,
        description="Default: mse for regression; for classification, binary_crossentropy for "
        "two classes and sparse_categorical_crossentropy for more.",
    )
    metrics: list[MetricName] | None = Field(
        None, description="Default: [mae] for regression, [accuracy] for classification."
    )
    class_weight: ClassWeight = Field(
        None,
        description="Classification: balanced (n / (classes x count) per class), or "
        "{label: weight}; unlisted classes weigh 1.",
    )
    epochs: Annotated[int, Field(gt=0, le=MAX_EPOCHS)] | Literal["auto"] = Field(
        "auto",
        description="Passes over the training rows, or auto: as many epochs as training.steps "
        "optimizer steps take, whatever the row count (an epoch is then one pass or "
        f"{MIN_EPOCH_STEPS} steps, whichever is more).",
    )
    steps: Annotated[int, Field(gt=0, le=MAX_STEPS)] | None = Field(
        None,
        description=f"Optimizer steps that epochs: auto trains for (default {DEFAULT_STEPS}); "
        "early stopping may end the training sooner.",
    )
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
    seed: Seed = 42

    @field_validator("epochs", mode="before")
    @classmethod
    def _epochs_count_or_auto(cls, value: Any) -> Any:
        # One rule for the union, rather than pydantic's message for each of its members.
        if value == "auto" or (
            isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_EPOCHS
        ):
            return value
        raise rule_error(
            f"must be a positive integer up to {MAX_EPOCHS:,}, or auto",
            received=f"epochs={value!r}",
        )

    @model_validator(mode="after")
    def _steps_only_with_auto_epochs(self) -> TrainingConfig:
        if self.steps is not None and self.epochs != "auto":
            raise rule_error(
                "applies only with epochs: auto (a fixed epoch count sets the length itself)",
                loc="steps",
                received=f"steps={self.steps} with epochs={self.epochs}",
            )
        return self

    @model_validator(mode="after")
    def _one_step_per_call_when_distributed(self) -> TrainingConfig:
        # Keras 3.15 under tf.distribute fails on several steps per call ("You must feed a
        # value for placeholder tensor ..."), so distributed training runs one step per call.
        if self.distribution != "none":
            if "steps_per_execution" in self.model_fields_set and self.steps_per_execution != 1:
                raise rule_error(
                    f"must be 1 with distribution {self.distribution}",
                    loc="steps_per_execution",
                    received=f"steps_per_execution={self.steps_per_execution}",
                )
            self.steps_per_execution = 1
        return self


class Config(_Strict):
    """A whole builder config."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
    task: Literal["regression", "classification"] | None = Field(
        None, description="Inferred from the loss and output activation when not given."
    )
    backend: Literal["tensorflow", "jax", "torch"] | None = Field(
        None,
        description="Keras backend. --backend overrides it; without either, KERAS_BACKEND, "
        "then builder's default. A run's config.yaml records the one used.",
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
        output = self.model.output
        if self.task is None:
            out = output.activation if output is not None else None
            classification = self.training.loss in CLASSIFICATION_LOSSES or out in (
                "sigmoid",
                "threshold",
                "softmax",
            )
            self.task = "classification" if classification else "regression"
        training = self.training
        if self.task == "regression":
            if output is None:
                self.model.output = OutputLayer()
            elif output.units != 1:
                raise rule_error(
                    "must be 1 for regression (the model predicts one target column)",
                    loc=("model", "output", "units"),
                    received=f"units={output.units}",
                )
            if training.loss is None:
                training.loss = "mse"
            if training.loss == "sparse_categorical_crossentropy":
                raise rule_error(
                    "applies only to classification (task: classification)",
                    loc=("training", "loss"),
                    received=f"loss={training.loss} with task=regression",
                )
            if training.class_weight is not None:
                raise rule_error(
                    "applies only to classification (task: classification)",
                    loc=("training", "class_weight"),
                    received=f"class_weight={training.class_weight!r} with task=regression",
                )
        elif output is not None and training.loss is None:
            # The output decides; without one, the classes in the data decide both (with_classes).
            training.loss = (
                "binary_crossentropy" if output.units == 1 else "sparse_categorical_crossentropy"
            )
        if training.metrics is None:
            training.metrics = ["accuracy"] if self.task == "classification" else ["mae"]
        params = parameter_count(self)
        if params > MAX_PARAMETERS:
            raise rule_error(
                f"must have at most {MAX_PARAMETERS:,} trainable parameters",
                loc="model",
                received=f"{params:,}",
            )
        if self.tune is not None:
            names = objective_names(self.training.metrics)
            if self.tune.objective not in names:
                raise rule_error(
                    f"must be one of {', '.join(names)}",
                    loc=("tune", "objective"),
                    received=f"objective={self.tune.objective!r}",
                    hint=did_you_mean(self.tune.objective, names),
                )
            if self.tune.seed is not None:
                _seed_at(self.tune.seed, ("tune", "seed"))
            last = self.training.seed + self.tune.executions_per_trial - 1
            if last > MAX_SEED:
                raise rule_error(
                    f"must leave room for tune.executions_per_trial seeds (seed, seed+1 ... "
                    f"up to {MAX_SEED:,})",
                    loc=("training", "seed"),
                    received=f"seed={self.training.seed} with executions_per_trial="
                    f"{self.tune.executions_per_trial}",
                )
            if self.tune.objective.startswith("val_") and self.data.split.validation == 0:
                raise rule_error(
                    "needs a validation split (data.split.validation is 0)",
                    loc=("tune", "objective"),
                    received=f"objective={self.tune.objective!r}",
                )
        return self

    @property
    def source(self) -> Path | None:
        """The file this config was read from, if any."""
        return self._source

    @property
    def yaml_node(self) -> yaml.Node | None:
        """The root YAML node it was read from, if any: what ``where`` finds lines in."""
        return self._node

    def locate(self, source: Path | str | None, node: yaml.Node | None) -> Config:
        """Record where this config was read from (``builder.config.validate_config`` does).

        Args:
            source: the file; relative data paths resolve against its folder.
            node: the file's root YAML node, for line numbers in messages; ``None`` when the
                values no longer match the file's (e.g. after command-line overrides).

        Returns:
            This config.
        """
        self._source = Path(source) if source is not None else None
        self._node = node
        return self

    def where(self, *loc: str | int) -> str:
        """`` (file, line N)`` for a key path, to end a message about this config."""
        if self._source is None:
            return ""
        line = line_of(self._node, loc) if self._node is not None else None
        return f" ({self._source}, line {line})" if line else f" ({self._source})"

    def with_data(self, types: dict[str, str], classes: Sequence[str] | None = None) -> Config:
        """This config resolved against its data, as a run records it.

        Args:
            types: every feature's type (``numeric`` or ``categorical``), as read from the file.
            classes: a classification's class labels, in their recorded order.

        Returns:
            A new config where every feature has its type and, for classification, the output
            layer and loss fit the classes: when not given, one sigmoid unit and
            binary_crossentropy for two classes, one softmax unit per class and
            sparse_categorical_crossentropy for more.

        Raises:
            ConfigError: a given output, loss or metric does not fit the classes.
        """
        from builder.config.loading import validate_config

        raw = self.model_dump(mode="python")
        for entry in raw["data"]["features"]:
            entry["type"] = types[entry["name"]]
        if self.task == "classification" and classes is not None:
            _fit_classes(self, raw, list(classes))
        updated = validate_config(raw, source=self.source)
        return updated.locate(self.source, self.yaml_node)

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
        rule = path_rule(path)
        if rule is None:
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


def _fit_classes(config: Config, raw: dict[str, Any], classes: list[str]) -> None:
    """Choose or check a classifier's output layer, loss and metrics for ``classes``."""
    k = len(classes)
    shown = ", ".join(classes[:10]) + (" ..." if k > 10 else "")
    output, loss = raw["model"]["output"], raw["training"]["loss"]
    if output is None:
        output = (
            {"units": 1, "activation": "sigmoid"}
            if k == 2
            else {"units": k, "activation": "softmax"}
        )
        raw["model"]["output"] = output
    units, activation = output["units"], output.get("activation", "linear")
    if loss is None:
        loss = "binary_crossentropy" if units == 1 else "sparse_categorical_crossentropy"
        raw["training"]["loss"] = loss

    def refuse(loc: tuple[str, ...], rule: str, received: str) -> None:
        key = ".".join(loc)
        raise ConfigError(
            f"{key} {rule} for the {k} classes of target column '{config.data.target}' "
            f"({shown}). Received: {received}{config.where(*loc)}"
        )

    if units == 1:
        if k != 2:
            refuse(
                ("model", "output", "units"),
                f"must be {k}, one softmax unit per class,",
                "units=1",
            )
        if loss == "sparse_categorical_crossentropy":
            refuse(
                ("training", "loss"),
                "must be binary_crossentropy (or hinge, squared_hinge) with one output unit",
                f"loss={loss}",
            )
    elif units == k:
        if activation != "softmax":
            refuse(
                ("model", "output", "activation"),
                f"must be softmax with {k} output units (one probability per class)",
                f"activation={activation}",
            )
        if loss != "sparse_categorical_crossentropy":
            refuse(
                ("training", "loss"),
                f"must be sparse_categorical_crossentropy with {k} output units",
                f"loss={loss}",
            )
    else:
        allowed = "1 (two classes) or 2" if k == 2 else str(k)
        refuse(("model", "output", "units"), f"must be {allowed}", f"units={units}")
    if units > 1:
        binary = [m for m in raw["training"]["metrics"] if m in BINARY_METRICS]
        if binary:
            refuse(
                ("training", "metrics"),
                f"must not include {binary[0]} with {units} softmax outputs (it reads one output "
                "unit as the probability of class 1; builder reports per-class precision, "
                "recall and AUC itself)",
                f"metrics={raw['training']['metrics']}",
            )


def _seed_at(value: Any, loc: tuple[str, ...]) -> None:
    # tune.seed is builder.search's field; its range is the generators', checked here.
    try:
        _seed(value)
    except Exception as err:
        raise rule_error(
            err.context["rule"],  # type: ignore[attr-defined]
            loc=loc,
            received=f"{loc[-1]}={value!r}",
        ) from None


def parameter_count(config: Config, width: int | None = None) -> int:
    """Trainable parameters the config implies, computed without building the model.

    Args:
        config: the config.
        width: the inputs of the first hidden layer, when categorical features widen them
            (default: one per feature).
    """
    width = len(config.data.features) if width is None else width
    total = 0
    layers: list[Any] = list(config.model.layers)
    block = config.model.hidden
    if block is not None:  # a tuned block: count its largest network
        layers += [DenseLayer.model_construct(units=block.units, use_bias=True)] * _largest(
            block.layers
        )
    output = config.model.output or OutputLayer()  # classification: chosen from the data later
    for layer in [*layers, output]:
        if isinstance(layer, DenseArgs):
            units = _largest(layer.units)
            total += width * units + (units if layer.use_bias else 0)
            width = units
        elif isinstance(layer, BatchNormalizationLayer):
            total += 2 * width
    return total


def _largest(value: Any) -> Any:
    return value.largest() if isinstance(value, SearchSpace) else value
