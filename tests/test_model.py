"""Config -> keras.Sequential: layer names, parameter counts, the threshold shorthand."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from builder.config import load_config, parameter_count, parse_config
from builder.layers import Threshold
from builder.model import build_model, summary_text
from tests.conftest import TRAIN_CONFIGS


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_parameter_counts_match_layer_sizes(path):
    from builder.training import build_for_data, open_data, resolve_config

    config = load_config(path)
    model = build_for_data(config)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    if "categories" not in [layer.name for layer in model.layers]:
        assert trainable == parameter_count(config)
        return
    # Text columns widen the first layer's input: one per category (one-hot).
    table = open_data(config, config.check_data_path(), streamed=False)
    resolved = resolve_config(config, table)
    width = model.get_layer("categories").output_width
    numeric = len(config.data.features) - len(table.vocabularies)
    assert width == numeric + sum(len(v) for v in table.vocabularies.values())
    assert trainable == parameter_count(resolved, width)


def test_article_network_has_five_parameters():
    model = build_model(load_config("configs/salary_linear.yaml"))
    assert [layer.name for layer in model.layers] == ["normalization", "output", "target_scaling"]
    output = model.get_layer("output")
    assert output.kernel.shape == (4, 1) and output.bias.shape == (1,)
    text = summary_text(model)
    assert "output (Dense)" in text and "Trainable params: 5" in text


def test_normalize_none_is_exactly_the_article_network():
    config = parse_config(
        "name: t\ndata: {features: [a, b, c, d], target: y, normalize: none}\n"
        "training: {target_scaling: none}\n"
    )
    model = build_model(config)
    assert [layer.name for layer in model.layers] == ["output"]
    x = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    w, b = model.get_layer("output").get_weights()
    np.testing.assert_allclose(model(x).numpy(), x @ w + b, rtol=1e-6)


def test_hidden_layer_names_and_types():
    config = parse_config(
        "name: t\ndata: {features: [a, b], target: y}\nmodel:\n  layers:\n"
        "    - {type: dense, units: 4, activation: threshold}\n"
        "    - {type: dropout, rate: 0.1}\n"
        "    - {type: batch_normalization}\n"
        "    - {type: dense, units: 3, activation: tanh}\n"
        "    - {type: activation, activation: threshold}\n"
        "    - {type: threshold, threshold: 0.5, gradient: straight_through}\n"
    )
    model = build_model(config)
    names = [layer.name for layer in model.layers]
    assert names == [
        "normalization", "hidden_1", "hidden_1_threshold", "dropout_1",
        "batch_normalization_1", "hidden_2", "activation_1", "threshold_1", "output",
        "target_scaling",
    ]  # fmt: skip
    # `activation: threshold` is builder's step layer, never keras.activations.threshold
    assert isinstance(model.get_layer("hidden_1_threshold"), Threshold)
    assert model.get_layer("hidden_1").activation is keras.activations.linear
    assert model.get_layer("threshold_1").threshold == 0.5
    assert model.get_layer("hidden_2").activation is keras.activations.tanh


def test_threshold_output_is_a_step():
    config = parse_config(
        "name: t\ndata: {features: [a], target: y, normalize: none}\n"
        "model: {output: {activation: threshold}}\n"
    )
    model = build_model(config)
    assert config.task == "classification"
    out = model(np.linspace(-3, 3, 11, dtype=np.float32)[:, None]).numpy()
    assert set(np.unique(out).tolist()) <= {0.0, 1.0}


def test_target_scaling_un_scales_the_output():
    config = parse_config("name: t\ndata: {features: [a], target: y, normalize: none}\n")
    model = build_model(config, target_mean=100.0, target_std=10.0)
    dense = model.get_layer("output")
    dense.set_weights([np.array([[2.0]], np.float32), np.array([1.0], np.float32)])
    assert model(np.array([[3.0]], np.float32)).numpy()[0, 0] == pytest.approx(
        (2 * 3 + 1) * 10 + 100
    )


def test_regularizers_and_initializers_reach_keras():
    config = parse_config(
        "name: t\ndata: {features: [a], target: y}\nmodel:\n  layers:\n"
        "    - {type: dense, units: 2, kernel_initializer: zeros, kernel_regularizer: {l2: 0.1}}\n"
    )
    layer = build_model(config).get_layer("hidden_1")
    assert np.all(layer.get_weights()[0] == 0)
    assert layer.kernel_regularizer.l2 == pytest.approx(0.1)
