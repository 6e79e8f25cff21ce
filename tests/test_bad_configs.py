"""The corpus of invalid configs in tests/bad_configs: one clear line each, exit 2.

Each file's first line says what the message must contain (``# expect: ...``); a line marked
``# <-`` is the line the message must name.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from builder.cli import app
from builder.config import validate_config
from builder.errors import ConfigError

CORPUS = sorted((Path(__file__).parent / "bad_configs").glob("*.yaml"))
runner = CliRunner()

# Document-level problems have no key path; every other case names one.
NO_KEY_PATH = {
    "alias_bomb", "comment_only", "empty", "non_utf8", "python_object_apply", "python_name_tag",
    "top_level_list", "duplicate_key", "yaml_bad_indent", "yaml_tab", "yaml_unclosed_bracket",
}  # fmt: skip


def _expectation(path: Path) -> tuple[str, int | None]:
    raw = path.read_bytes()
    first = raw.split(b"\n", 1)[0].decode()
    assert first.startswith("# expect: "), path
    marked = [i + 1 for i, line in enumerate(raw.split(b"\n")) if line.endswith(b"# <-")]
    return first.removeprefix("# expect: "), (marked[0] if marked else None)


def test_corpus_has_at_least_forty_files():
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_bad_config_gives_one_located_line(path):
    expected, line = _expectation(path)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith("invalid: ")
    message = message.removeprefix("invalid: ")
    assert expected in message, message
    assert str(path) in message  # the file is named
    if line is not None:
        assert f"line {line}" in message, message
    if path.stem not in NO_KEY_PATH:
        key_path = expected.split(" ")[0]
        assert message.startswith(key_path), message
        if "Received" in expected or "must be" in expected:
            assert "must" in message


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_train_refuses_bad_config_before_work(path, tmp_path):
    result = runner.invoke(app, ["train", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: ")
    assert not (tmp_path / "runs").exists()


def test_python_tag_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    assert runner.invoke(app, ["validate", str(config)]).exit_code == 2
    assert not marker.exists()


def test_alias_bomb_is_refused_before_anything_is_built(monkeypatch):
    # Expanded, the document is 10^10 nodes: it must be refused from the composed node tree
    # (aliases shared), before PyYAML constructs anything or the schema walks it.
    import yaml

    def construct_document(self, node):
        raise AssertionError("the alias bomb reached construction")

    monkeypatch.setattr(yaml.constructor.BaseConstructor, "construct_document", construct_document)
    path = next(p for p in CORPUS if p.stem == "alias_bomb")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2
    assert "must expand to at most 100,000 YAML nodes" in result.output


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10**12), st.floats(allow_nan=True),
    st.text(max_size=12), st.sampled_from(["dense", "relu", "threshold", "adam", "mse", "a"]),
)  # fmt: skip
keys = st.sampled_from(
    ["name", "data", "model", "training", "layers", "output", "units", "type", "features",
     "target", "activation", "rate", "epochs", "optimizer", "learning_rate", "split", "x"]
)  # fmt: skip
nested = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, nested, max_size=6))
def test_random_configs_are_valid_or_a_config_error(data):
    try:
        validate_config(data)
    except ConfigError as error:
        assert "\n" not in str(error)


@settings(max_examples=200, deadline=None)
@given(
    units=st.one_of(st.integers(), st.floats(), st.text(max_size=3), st.none()),
    activation=st.one_of(st.text(max_size=8), st.integers()),
)
def test_random_layers_are_valid_or_a_config_error(units, activation):
    data = {
        "name": "h",
        "data": {"features": ["a"], "target": "y"},
        "model": {"layers": [{"type": "dense", "units": units, "activation": activation}]},
    }
    try:
        config = validate_config(data)
    except ConfigError as error:
        assert str(error).startswith("model.layers[0].")
    else:
        assert config.model.layers[0].units == units
