"""The config schema: valid configs load, invalid ones give one located ConfigError."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from builder import SCHEMA_FILE
from builder.config import (
    ACTIVATIONS,
    INITIALIZERS,
    KERAS_ACTIVATIONS,
    LOSSES,
    METRICS,
    OPTIMIZERS,
    json_schema,
    json_schema_text,
    load_config,
    parameter_count,
    parse_config,
)
from builder.errors import ConfigError
from tests.conftest import CONFIGS, run_python

BASE = """\
name: t
data:
  path: data.csv
  features: [a, b]
  target: y
model:
  layers:
    - {type: dense, units: 4, activation: relu}
    - {type: dense, units: 3}
  output: {units: 1}
training:
  epochs: 5
"""


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    config = load_config(path)
    assert config.name == path.stem
    assert config.data_path().exists()


def test_defaults_are_filled_in():
    config = parse_config(BASE)
    assert config.task == "regression"
    assert config.training.optimizer.name == "adam"
    assert config.data.split.validation == 0.15
    assert config.data.normalize == "zscore"


def test_task_is_inferred_from_output_activation_and_loss():
    sigmoid = parse_config(BASE.replace("output: {units: 1}", "output: {activation: sigmoid}"))
    assert sigmoid.task == "classification"
    hinge = parse_config(BASE.replace("epochs: 5", "loss: hinge"))
    assert hinge.task == "classification"


def test_json_config_is_accepted(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(yaml.safe_load(BASE)))
    assert load_config(path).model.layers[0].units == 4


def test_data_path_is_relative_to_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.yaml"
    path.write_text(BASE)
    assert load_config(path).data_path() == tmp_path / "sub" / "data.csv"


def test_parameter_count_matches_layer_sizes():
    # 2 inputs -> 4 -> 3 -> 1: (2*4+4) + (4*3+3) + (3*1+1)
    assert parameter_count(parse_config(BASE)) == 12 + 15 + 4


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    assert load_config(path).name == "t"


# (description, config text, key path the message must name, line the message must name)
INVALID = [
    ("zero units", BASE.replace("units: 3", "units: 0"), "model.layers[1].units", 9),
    ("negative units", BASE.replace("units: 3", "units: -2"), "model.layers[1].units", 9),
    ("units not int", BASE.replace("units: 3", "units: 3.5"), "model.layers[1].units", 9),
    ("units string", BASE.replace("units: 3", "units: '3'"), "model.layers[1].units", 9),
    ("absurd units", BASE.replace("units: 3", "units: 1000000000"), "model.layers[1].units", 9),
    ("unknown layer type", BASE.replace("type: dense, units: 3", "type: dence, units: 3"),
     "model.layers[1].type", 9),
    ("missing layer type", BASE.replace("{type: dense, units: 3}", "{units: 3}"),
     "model.layers[1].type", 9),
    ("unknown activation", BASE.replace("relu", "rleu"), "model.layers[0].activation", 8),
    ("keras threshold is not a layer arg", BASE.replace("units: 3}", "units: 3, thresh: 1}"),
     "model.layers[1].thresh", 9),
    ("unknown top key", BASE + "trainig: {}\n", "trainig", 13),
    ("unknown nested key", BASE.replace("epochs: 5", "epoch: 5"), "training.epoch", 12),
    ("zero epochs", BASE.replace("epochs: 5", "epochs: 0"), "training.epochs", 12),
    ("zero batch size", BASE.replace("epochs: 5", "batch_size: 0"), "training.batch_size", 12),
    ("bool epochs", BASE.replace("epochs: 5", "epochs: true"), "training.epochs", 12),
    ("zero learning rate", BASE.replace("epochs: 5", "optimizer: {learning_rate: 0}"),
     "training.optimizer.learning_rate", 12),
    ("negative learning rate", BASE.replace("epochs: 5", "optimizer: {learning_rate: -0.1}"),
     "training.optimizer.learning_rate", 12),
    ("unknown optimizer", BASE.replace("epochs: 5", "optimizer: {name: adamm}"),
     "training.optimizer.name", 12),
    ("unknown loss", BASE.replace("epochs: 5", "loss: mse2"), "training.loss", 12),
    ("unknown metric", BASE.replace("epochs: 5", "metrics: [mae, acuracy]"),
     "training.metrics[1]", 12),
    ("dropout rate 1", BASE.replace("{type: dense, units: 3}", "{type: dropout, rate: 1.0}"),
     "model.layers[1].rate", 9),
    ("dropout rate negative",
     BASE.replace("{type: dense, units: 3}", "{type: dropout, rate: -0.1}"),
     "model.layers[1].rate", 9),
    ("threshold gradient", BASE.replace("{type: dense, units: 3}",
                                        "{type: threshold, gradient: sigmod}"),
     "model.layers[1].gradient", 9),
    ("threshold slope", BASE.replace("{type: dense, units: 3}", "{type: threshold, slope: 0}"),
     "model.layers[1].slope", 9),
    ("target is a feature", BASE.replace("target: y", "target: a"), "data.target", 5),
    ("duplicate features", BASE.replace("[a, b]", "[a, a]"), "data.features", 4),
    ("no features", BASE.replace("[a, b]", "[]"), "data.features", 4),
    ("features not a list", BASE.replace("[a, b]", "a"), "data.features", 4),
    ("split leaves no training",
     BASE.replace("target: y", "target: y\n  split: {validation: 0.5, test: 0.5}"),
     "data.split.test", 6),
    ("split fraction 1", BASE.replace("target: y", "target: y\n  split: {test: 1.0}"),
     "data.split.test", 6),
    ("unknown normalize", BASE.replace("target: y", "target: y\n  normalize: minmax"),
     "data.normalize", 6),
    ("missing data", "name: t\n", "data", None),
    ("missing target", BASE.replace("  target: y\n", ""), "data.target", 3),
    ("bad name", BASE.replace("name: t", "name: ../evil"), "name", 1),
    ("too many parameters",
     BASE.replace("units: 4,", "units: 60000,").replace("units: 3", "units: 60000"),
     "model", None),
    ("output activation unknown", BASE.replace("output: {units: 1}", "output: {activation: foo}"),
     "model.output.activation", 10),
]  # fmt: skip


@pytest.mark.parametrize(("text", "where", "line"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])  # fmt: skip
def test_invalid_config_names_the_key_path_and_line(text, where, line):
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="bad.yaml")
    message = str(info.value)
    assert message.startswith(where + " "), message
    assert "\n" not in message
    if line is not None:
        assert f"(bad.yaml, line {line})" in message, message
    assert "bad.yaml" in message


def test_at_least_twenty_invalid_cases():
    assert len(INVALID) >= 20


def test_message_has_rule_and_received_value():
    with pytest.raises(ConfigError) as info:
        parse_config(BASE.replace("units: 3", "units: 0"), source="configs/mlp.yaml")
    assert str(info.value) == (
        "model.layers[1].units must be a positive integer. Received: units=0 "
        "(configs/mlp.yaml, line 9)"
    )


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        (BASE.replace("relu", "rleu"), "Did you mean 'relu'?"),
        (BASE.replace("epochs: 5", "epoch: 5"), "Did you mean 'epochs'?"),
        (BASE.replace("type: dense, units: 3", "type: dence, units: 3"), "Did you mean 'dense'?"),
        (BASE.replace("epochs: 5", "optimizer: {name: adamm}"), "Did you mean 'adam'?"),
    ],
)
def test_did_you_mean(text, suggestion):
    with pytest.raises(ConfigError, match=suggestion):
        parse_config(text)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a: [1, 2\n", r"not valid YAML: .*\(line 2, column 1\)"),
        ("- 1\n- 2\n", "top level must be a mapping"),
        ("", "is empty"),
        ("!!python/object/apply:os.system ['echo hi']\n", "tags that build Python objects"),
        ("name: t\nname: u\n", "key 'name' appears twice"),
    ],
)
def test_unreadable_documents(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_config(text)


def test_python_tag_is_refused_without_running(tmp_path):
    marker = tmp_path / "marker"
    text = f"!!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(ConfigError):
        parse_config(text)
    assert not marker.exists()


def test_alias_bomb_is_refused_quickly():
    lines = ["a: &a [1,1,1,1,1,1,1,1,1]"]
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    with pytest.raises(ConfigError, match="at most 100,000 YAML nodes"):
        parse_config("\n".join(lines) + "\n")


def test_missing_file_and_directory_and_binary(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="must be a file"):
        load_config(tmp_path)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="must be UTF-8"):
        load_config(binary)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_json_schema_validates_shipped_configs(path):
    jsonschema.validate(yaml.safe_load(path.read_text()), json_schema())


def test_shipped_schema_file_is_current():
    # `builder schema` prints this file rather than importing pydantic; it must not go stale.
    assert SCHEMA_FILE.read_text(encoding="utf-8") == json_schema_text(), (
        'builder/config.schema.json is stale; regenerate it: python -c "import builder, '
        'builder.config as c; builder.SCHEMA_FILE.write_text(c.json_schema_text())"'
    )


def test_json_schema_rejects_an_unknown_key():
    data = yaml.safe_load(BASE)
    data["training"]["epoch"] = 5
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, json_schema())


def test_allow_lists_resolve_in_keras():
    import keras

    for name in KERAS_ACTIVATIONS:
        assert callable(keras.activations.get(name)), name
    assert "threshold" in ACTIVATIONS and "threshold" not in KERAS_ACTIVATIONS
    for name in OPTIMIZERS:
        assert keras.optimizers.get(name) is not None, name
    for name in LOSSES:
        assert keras.losses.get(name) is not None, name
    for name in INITIALIZERS:
        assert keras.initializers.get(name) is not None, name
    for name in METRICS:
        assert keras.metrics.get(name) is not None, name  # ValueError for a name Keras lacks
    with pytest.raises(ValueError, match="Could not interpret metric identifier"):
        keras.metrics.get("mean_sqared_error")


def test_every_metric_compiles_and_reports_as_training_compiles_it():
    import numpy as np

    from builder.model import build_model
    from builder.search import objective_names
    from builder.training import compile_model

    text = BASE.replace("output: {units: 1}", "output: {activation: sigmoid}")
    config = parse_config(text.replace("epochs: 5", f"epochs: 5\n  metrics: {list(METRICS)}"))
    assert config.training.metrics == list(METRICS)
    x = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [1.0, 2.0]], np.float32)
    y = np.array([[0.0], [1.0], [1.0], [0.0]], np.float32)

    def logs_of(config):
        model = build_model(config)
        compile_model(model, config, len(x))
        return model.evaluate(x, y, verbose=0, return_dict=True)

    logs = logs_of(config)
    # One log per metric (Keras resolves each name only here, at the first evaluation), under
    # the name that tune objectives and history columns use for it.
    logged = [name for name in objective_names(METRICS) if not name.startswith("val_")]
    assert sorted(logs) == sorted(logged)
    assert all(np.isfinite(value) for value in logs.values()), logs
    # A name Keras does not know fails right there; the schema is what keeps it out of configs.
    unknown = config.model_copy(deep=True)
    unknown.training.metrics = ["mean_sqared_error"]
    with pytest.raises(ValueError, match="Could not interpret metric identifier"):
        logs_of(unknown)


def test_threshold_layer_schema_accepts_exactly_the_layer_gradients():
    from builder.layers import GRADIENTS, Threshold

    threshold = "    - {type: dense, units: 3}"
    for gradient in GRADIENTS:
        layer = f"    - {{type: threshold, gradient: {gradient}}}"
        config = parse_config(BASE.replace(threshold, layer))
        assert config.model.layers[1].gradient == gradient
        Threshold(gradient=gradient)  # and the layer takes it
    with pytest.raises(ConfigError, match="gradient"):
        parse_config(BASE.replace(threshold, "    - {type: threshold, gradient: identity}"))
    with pytest.raises(ValueError, match="gradient"):
        Threshold(gradient="identity")
    schema = json_schema()["$defs"]["ThresholdLayer"]["properties"]["gradient"]
    assert sorted(schema["enum"]) == sorted(GRADIENTS)


def test_config_module_does_not_import_tensorflow():
    code = (
        "import sys, builder.config, builder; builder.load_config; "
        "print(any(m in sys.modules for m in ('tensorflow', 'keras')))"
    )
    out = run_python(code, check=True)
    assert out.stdout.strip() == "False"
