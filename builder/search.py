"""Search spaces in a config, and its ``tune`` section. No TensorFlow, like ``builder.config``.

A config declares a search space where it would otherwise give a value::

    units: {search: int, min: 8, max: 64, step: 8}
    activation: {search: choice, values: [relu, tanh, threshold]}
    learning_rate: {search: float, min: 1.0e-4, max: 0.1, sampling: log}

``searchable(T, base)`` is the annotation of such a field: a plain ``T`` or a ``SearchSpace`` whose
bounds and choices are each checked against ``T`` itself, so a space can only produce values the
field would accept (``units: {search: int, min: 0, ...}`` fails like ``units: 0`` does).
``builder.tuning`` turns the spaces into Keras Tuner hyperparameters; everything else refuses a
config that still has them (``require_values``).
"""

from __future__ import annotations

import importlib.util
import math
from typing import Annotated, Any, Literal, NoReturn

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from builder.errors import ConfigError
from builder.rules import rule_error, rule_text

# Union tags of a searchable field; builder.config's messages drop them from error locations.
VALUE_TAG = "value"
SPACE_TAG = "space"
SPACE_TAGS = (VALUE_TAG, SPACE_TAG)

# What Keras Tuner's BayesianOptimization imports; the `bayesian` extra installs them.
BAYESIAN_MODULES = ("sklearn", "scipy")

# Objectives where larger is better; every other objective is minimized.
MAXIMIZED = ("accuracy", "binary_accuracy", "auc", "precision", "recall")


class _Strict(BaseModel):
    # defer_build: built with Config on first use, not at import (as builder.config.schema's).
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)


class SearchSpace(_Strict):
    """Where a config would give a value, the values Keras Tuner may try."""

    search: Literal["int", "float", "choice"] = Field(
        description="int or float: a range from min to max; choice: one of values."
    )
    min: int | float | None = None
    max: int | float | None = None
    step: int | float | None = Field(None, description="Spacing of a range (linear sampling).")
    sampling: Literal["linear", "log"] = Field(
        "linear", description="log: spread evenly over orders of magnitude (min must be > 0)."
    )
    values: Annotated[list[int | float | str], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SearchSpace:
        if self.search == "choice":
            if self.values is None:
                _fail("is required for search: choice", "values", "a choice without values")
            for key in ("min", "max", "step"):
                if getattr(self, key) is not None:
                    _fail(
                        "is only for search: int or float (choice takes values)",
                        key,
                        f"{key}={getattr(self, key)!r}",
                    )
            if self.sampling != "linear":
                _fail("is only for search: int or float", "sampling", f"sampling={self.sampling!r}")
            values = self.values or []
            for index, value in enumerate(values):
                if value in values[:index]:
                    _fail("must not repeat a value", "values", f"{value!r} twice")
            if any(isinstance(v, str) for v in values) and not all(
                isinstance(v, str) for v in values
            ):
                _fail("must be all numbers or all names", "values", f"values={values!r}")
            return self
        if self.values is not None:
            _fail("is only for search: choice", "values", f"values={self.values!r}")
        for key in ("min", "max"):
            if getattr(self, key) is None:
                _fail(f"is required for search: {self.search}", key, f"a range without {key}")
        for key in ("min", "max", "step"):
            value = getattr(self, key)
            if value is None:
                continue
            if self.search == "int" and not isinstance(value, int):
                _fail("must be an integer for search: int", key, f"{key}={value!r}")
            if not math.isfinite(value):
                _fail("must be a finite number", key, f"{key}={value!r}")
        if self.min > self.max:
            _fail("must be at least min", "max", f"min={self.min!r}, max={self.max!r}")
        if self.step is not None and self.step <= 0:
            _fail("must be greater than 0", "step", f"step={self.step!r}")
        if self.sampling == "log" and self.min <= 0:
            _fail("must be greater than 0 for sampling: log", "min", f"min={self.min!r}")
        return self

    def largest(self) -> Any:
        """The largest value the space can produce (for size limits)."""
        if self.search == "choice":
            return max(self.values or [0])
        return self.max


def _fail(rule: str, key: str, received: str) -> NoReturn:
    raise rule_error(rule, loc=key, received=received)


def is_space(value: Any) -> bool:
    """Whether a field value (parsed or raw) is a search space rather than a value."""
    return isinstance(value, SearchSpace) or (isinstance(value, dict) and "search" in value)


def _tag(value: Any) -> str:
    return SPACE_TAG if isinstance(value, SearchSpace | dict) else VALUE_TAG


def searchable(inner: Any, base: type) -> Any:
    """The annotation of a field that takes a value of type ``inner`` or a search space.

    Args:
        inner: the field's own annotated type (``Units``, ``Activation`` ...).
        base: ``int``, ``float`` or ``str``: which kinds of space make sense (``int`` takes
            ``search: int`` and ``choice``; ``float`` takes ``float`` and ``choice``; ``str``
            only ``choice``).
    """
    kinds = {int: ("int", "choice"), float: ("float", "choice"), str: ("choice",)}[base]
    adapters: list[TypeAdapter] = []  # made on first use: each costs a schema build at import

    def check(space: SearchSpace) -> SearchSpace:
        if not adapters:
            adapters.append(TypeAdapter(inner))
        adapter = adapters[0]
        if space.search not in kinds:
            allowed = " or ".join(kinds)
            _fail(f"must be {allowed} for this key", "search", f"search={space.search!r}")
        if space.search == "choice":
            for value in space.values or []:
                _check_value(adapter, base, value, "values")
        else:
            _check_value(adapter, base, space.min, "min")
            _check_value(adapter, base, space.max, "max")
        if base is float:
            # Keras Tuner's Choice wants one type; 1 and 0.5 in one list are both floats here.
            return space.model_copy(
                update={
                    "min": None if space.min is None else float(space.min),
                    "max": None if space.max is None else float(space.max),
                    "values": None if space.values is None else [float(v) for v in space.values],
                }
            )
        return space

    return Annotated[
        Annotated[inner, Tag(VALUE_TAG)]
        | Annotated[SearchSpace, AfterValidator(check), Tag(SPACE_TAG)],
        Discriminator(_tag),
    ]


def _check_value(adapter: TypeAdapter, base: type, value: Any, key: str) -> None:
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # a float field takes 0 for 0.0
    try:
        adapter.validate_python(value, strict=True)
    except ValidationError as err:
        error = err.errors(include_url=False)[0]
        ctx = error.get("ctx") or {}
        raise rule_error(
            rule_text(error, integer=base is int),
            loc=key,
            received=f"{key}={value!r}",
            hint=ctx.get("hint", ""),
        ) from None


class TuneConfig(_Strict):
    """How ``builder tune`` searches: the tuner, its objective and its budget."""

    tuner: Literal["random", "hyperband", "bayesian"] = Field(
        "random",
        description="random search, Hyperband (successive halving; each trial trains from "
        "scratch) or Bayesian optimization (Gaussian process).",
    )
    objective: str = Field(
        "val_loss",
        description="What the search optimizes: loss, val_loss, or a configured metric "
        "(val_mae ...); the best epoch of each trial counts.",
    )
    direction: Literal["min", "max"] | None = Field(
        None, description="Inferred: max for accuracy, auc, precision and recall, else min."
    )
    max_trials: Annotated[int, Field(gt=0, le=100_000)] = Field(
        10, description="Trials to run at most (Hyperband may stop earlier)."
    )
    executions_per_trial: Annotated[int, Field(gt=0, le=100)] = Field(
        1, description="Trainings per trial with seeds seed, seed+1 ...; the score is their mean."
    )
    epochs: Annotated[int, Field(gt=0, le=100_000)] | None = Field(
        None,
        description="Epochs per trial (Hyperband: the most a trial trains). "
        "Default: training.epochs.",
    )
    factor: Annotated[int, Field(ge=2, le=100)] = Field(
        3, description="Hyperband: keep 1/factor of the trials in each round."
    )
    seed: int | None = Field(
        None, description="Seed of the tuner's choices. Default: training.seed."
    )

    def resolved_direction(self) -> str:
        """``min`` or ``max``: given, or inferred from the objective's name."""
        if self.direction is not None:
            return self.direction
        name = self.objective.removeprefix("val_")
        return "max" if name in MAXIMIZED else "min"


def objective_names(metrics: list[str]) -> list[str]:
    """The names ``fit`` logs for a config's loss and metrics, with their ``val_`` forms."""
    # builder.training names these metric objects itself; Keras logs other metrics by the
    # string they were compiled with.
    logged = {"root_mean_squared_error": "rmse"}
    names = ["loss", *[logged.get(m, m) for m in metrics]]
    return [*names, *[f"val_{n}" for n in names]]


# --------------------------------------------------------------------------------------------
# Finding spaces in a parsed config


def spaces(config: Any) -> list[tuple[str, SearchSpace]]:
    """Every search space in a parsed config, as ``(key path, space)`` in config order."""
    found: list[tuple[str, SearchSpace]] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, SearchSpace):
            found.append((path, value))
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), f"{path}.{name}" if path else name)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")

    walk(config, "")
    return found


def require_tunable(config: Any) -> None:
    """Refuse a config ``builder tune`` cannot search: no search space, or multi_worker.

    Raises:
        ConfigError: naming what to change.
    """
    where = f" ({config.source})" if getattr(config, "source", None) else ""
    if not spaces(config):
        raise ConfigError(
            "the config has no search space, so there is nothing to tune: give one where a "
            "value would go (e.g. units: {search: int, min: 8, max: 64}), or use builder train"
            f"{where}"
        )
    if config.training.distribution == "multi_worker":
        raise ConfigError(
            "training.distribution must be none or mirrored for builder tune (its trials run "
            f"on one machine). Received: distribution='multi_worker'{where}"
        )
    tuner = config.tune.tuner if config.tune is not None else "random"
    needed = BAYESIAN_MODULES if tuner == "bayesian" else ()
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"tune.tuner: bayesian needs {' and '.join(missing)}, which builder installs only on "
            "request (Keras imports scikit-learn on every start when it is installed): "
            "pip install -e '.[bayesian]', or use tuner: random or hyperband. "
            f"Received: tuner='bayesian'{config.where('tune', 'tuner')}"
        )


def require_values(config: Any, command: str) -> None:
    """Refuse a config that still has search spaces, naming the first one.

    Raises:
        ConfigError: the config has a search space; ``builder tune`` resolves them.
    """
    found = spaces(config)
    if found:
        path, _ = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        where = f" ({config.source})" if getattr(config, "source", None) else ""
        raise ConfigError(
            f"{path} is a search space{more}; {command} needs values. "
            f"Run `builder tune CONFIG` and use the best.yaml it writes{where}"
        )
