"""Hostile configs the corpus format cannot hold: document-level YAML problems, files that are
not regular files, and data that did not come from YAML. One line each, exit 2, never a
traceback or a hang (issue 11).

Each table is one kind; ``# <-`` in a case's text marks the line its message must name.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from builder.cli import app
from builder.config import load_config, validate_config
from builder.config.names import MAX_CONFIG_BYTES, MAX_YAML_DEPTH
from builder.errors import ConfigError, RunError
from builder.runs import load_run_config

runner = CliRunner()
GOOD = (Path(__file__).parents[1] / "configs" / "salary_linear.yaml").read_text()


@contextmanager
def deadline(seconds: float):
    """Fail, rather than hang, when the block takes longer than ``seconds``."""

    def expired(signum, frame):
        raise TimeoutError(f"took more than {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def one_line(path: Path | str) -> str:
    """``builder validate PATH``'s message, checked to be one line, exit 2, no traceback."""
    with deadline(20):
        result = runner.invoke(app, ["validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith("invalid: "), message
    return message


def marked_line(text: str) -> int | None:
    marked = [i + 1 for i, line in enumerate(text.split("\n")) if line.endswith("# <-")]
    return marked[0] if marked else None


def check_case(tmp_path: Path, text: str, expected: str) -> str:
    path = tmp_path / "hostile.yaml"
    path.write_text(text, encoding="utf-8")
    message = one_line(path)
    assert expected in message, message
    assert str(path) in message, message
    line = marked_line(text)
    if line is not None:
        assert f"line {line}" in message, message
    assert "YAML tags that build Python objects" not in message or "tag" in expected
    return message


# --------------------------------------------------------------------------------------------
# Scalars that PyYAML resolves as a number, date or boolean but cannot build

SCALARS = {
    "timestamp_month_13": ("name: 2001-13-45  # <-\n", "YAML date must be a valid one (month"),
    "timestamp_day_30_feb": ("name: 2001-02-30  # <-\n", "YAML date must be a valid one (day"),
    "timestamp_hour_25": ("name: 2001-01-01 25:00:00  # <-\n", "YAML date must be a valid one"),
    "timestamp_in_a_list": ("name: x\nl:\n  - 2020-00-01  # <-\n", "YAML date must be a valid"),
    "binary_int_empty": ("name: x\nu: 0b_  # <-\n", "YAML integer must be a valid one"),
    "hex_int_empty": ("name: x\nu: -0x_  # <-\n", "YAML integer must be a valid one"),
    "int_too_many_digits": ("name: x\nu: " + "7" * 5000 + "  # <-\n", "YAML integer must be"),
    "float_tag_on_text": ("name: x\nu: !!float abc  # <-\n", "YAML number must be a valid one"),
    "int_tag_on_empty": ("name: x\nu: !!int ''  # <-\n", "YAML integer must be a valid one"),
    "bool_tag_on_text": ("name: x\nu: !!bool maybe  # <-\n", "YAML boolean must be a valid one"),
    "timestamp_tag_on_int": ("name: x\nu: !!timestamp 5  # <-\n", "YAML date must be a valid"),
    "as_a_key": ("name: x\n2001-13-45: 1  # <-\n", "YAML date must be a valid one"),
}


@pytest.mark.parametrize("case", SCALARS, ids=str)
def test_unbuildable_scalar_is_named(tmp_path, case):
    text, expected = SCALARS[case]
    message = check_case(tmp_path, text, expected)
    assert "quote it" in message and "Received: " in message


# --------------------------------------------------------------------------------------------
# Keys that are not scalars, merges of something else than mappings, odd tags

KEYS = {
    "sequence_key_block": ("name: x\n? [a, b]  # <-\n: 1\n", "a mapping key must be a name"),
    "sequence_key_flow": ("{[1]: 2}\n", "Received: a list as a key (line 1"),
    "mapping_key": ("name: x\n? {a: 1}  # <-\n: 2\n", "Received: a mapping as a key"),
    # The key is the anchored list itself: the message names where it is written.
    "alias_of_a_list_as_key": ("a: &l [1]\n? *l\n: 2\n", "Received: a list as a key (line 1"),
    "merge_of_scalar": ("name: x\nd:\n  <<: 5  # <-\n", "a merge key '<<' must be given a mapping"),
    "merge_of_string": ("d:\n  <<: abc  # <-\n", "Received: the scalar 'abc'"),
    "merge_list_with_scalar": (
        "a: &a {x: 1}\nd:\n  <<: [*a, 7]  # <-\n",
        "a merge key '<<' must be given a mapping or a list of mappings. Received: the scalar '7'",
    ),
    "merge_of_list_of_lists": ("d:\n  <<: [[1]]  # <-\n", "Received: a list"),
    "set_of_a_scalar": ("name: x\nu: !!set 5  # <-\n", "is not valid YAML data"),
    "unknown_tag": ("name: !!python/none x\n", "YAML tags that build Python objects"),
}


@pytest.mark.parametrize("case", KEYS, ids=str)
def test_odd_keys_and_merges_have_their_own_message(tmp_path, case):
    text, expected = KEYS[case]
    check_case(tmp_path, text, expected)


def test_a_valid_merge_still_works(tmp_path):
    path = tmp_path / "merge.yaml"
    old = "  optimizer: {name: adam, learning_rate: 0.1, schedule: cosine}"
    assert old in GOOD
    path.write_text(
        GOOD.replace(old, "  optimizer: {<<: {name: adam, learning_rate: 0.1}, schedule: cosine}")
    )
    config = load_config(path)
    assert config.training.optimizer.learning_rate == 0.1


# --------------------------------------------------------------------------------------------
# Nesting and aliases

DEPTH = f"must nest at most {MAX_YAML_DEPTH} mappings and lists deep"
NESTING = {
    "flow_lists_5000": ("name: x\nu: " + "[" * 5000 + "]" * 5000 + "\n", DEPTH),
    "flow_lists_just_over": ("u: " + "[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH + "\n", DEPTH),
    "flow_mappings": ("name: x\nu: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", DEPTH),
    "block_mappings": ("".join(" " * i + "a:\n" for i in range(1000)) + " " * 1000 + "1\n", DEPTH),
    "block_lists": ("u:\n" + "".join(" " * i + "-\n" for i in range(1000)), DEPTH),
    "alias_chain": (
        "a0: &a0 [1]\n"
        + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 200))
        + "name: x\n",
        DEPTH + " (aliases included)",
    ),
    "recursive_alias": ("name: x\nu: &r [1, *r]  # <-\n", "an alias must not refer to"),
    "recursive_alias_mapping": ("name: x\nu: &r {a: *r}  # <-\n", "an alias must not refer to"),
    "alias_bomb_mappings": (
        "a: &a {x: 1, y: 1, z: 1, w: 1, v: 1, t: 1, s: 1, r: 1, q: 1, p: 1}\n"
        + "".join(
            f"{c}: &{c} {{{', '.join(f'k{i}: *{p}' for i in range(10))}}}\n"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        "must expand to at most 100,000 YAML nodes",
    ),
}


@pytest.mark.parametrize("case", NESTING, ids=str)
def test_deep_or_recursive_documents_stop_at_a_limit(tmp_path, case):
    text, expected = NESTING[case]
    check_case(tmp_path, text, expected)


def test_nesting_at_the_limit_reaches_the_schema(tmp_path):
    inner = "[" * (MAX_YAML_DEPTH - 1) + "]" * (MAX_YAML_DEPTH - 1)
    message = check_case(tmp_path, f"name: x\nu: {inner}\n", "u is not a known key")
    assert DEPTH not in message


NOT_YAML = {
    "nul_character": ("name: a\x00b\n", "is not valid YAML: special characters are not allowed"),
    "bell_character": ("name: a\x07b\n", "Received: character #x0007"),
}


@pytest.mark.parametrize("case", NOT_YAML, ids=str)
def test_unreadable_characters_are_one_line(tmp_path, case):
    text, expected = NOT_YAML[case]
    check_case(tmp_path, text, expected)


# --------------------------------------------------------------------------------------------
# Data that did not come from YAML (validate_config), and values Python cannot show


def _deep(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def _recursive() -> list:
    value: list = [1]
    value.append(value)
    return value


DATA = {
    "deep_list": ({"name": "x", "u": _deep(10_000)}, DEPTH),
    "self_referential": ({"name": "x", "u": _recursive()}, DEPTH),
    "nan_anywhere": ({"name": "x", "u": {"v": [1.0, float("nan")]}}, "u.v[1] must be finite"),
    "float32_overflow": ({"name": "x", "u": -1e39}, "u must be finite as a 32-bit float"),
    "int_too_long_to_show": (
        {"name": "x", "data": {"features": ["a"], "target": "y"}, "task": 10**5000},
        "task must be one of",
    ),
}


@pytest.mark.parametrize("case", DATA, ids=str)
def test_plain_data_limits(case):
    data, expected = DATA[case]
    with deadline(20), pytest.raises(ConfigError) as caught:
        validate_config(data)
    message = str(caught.value)
    assert expected in message and "\n" not in message and len(message) < 500, message


# --------------------------------------------------------------------------------------------
# Files that are not regular files, or too large: refused by name before they are read

REGULAR = "must be a file (regular files only). Received: "


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo.yaml"
    os.mkfifo(path)
    return path


def _huge(tmp_path: Path) -> Path:
    path = tmp_path / "huge.yaml"
    path.write_text(GOOD + ("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1)))
    return path


def _symlink_to_device(tmp_path: Path) -> Path:
    path = tmp_path / "link.yaml"
    path.symlink_to("/dev/zero")
    return path


FILES = {
    "directory": (lambda tmp: tmp, REGULAR + "a directory"),
    "dev_zero": (lambda tmp: Path("/dev/zero"), REGULAR + "a character device"),
    "dev_null": (lambda tmp: Path("/dev/null"), REGULAR + "a character device"),
    "fifo_without_writer": (_fifo, REGULAR + "a FIFO (named pipe)"),
    "symlink_to_device": (_symlink_to_device, REGULAR + "a character device"),
    "over_the_size_limit": (_huge, "must be at most 1 MiB (1,048,576 bytes). Received: 1,"),
    "name_too_long": (lambda tmp: tmp / ("x" * 300 + ".yaml"), "cannot be read: File name too"),
}


@pytest.mark.parametrize("case", FILES, ids=str)
def test_config_files_are_regular_and_bounded(tmp_path, case):
    make, expected = FILES[case]
    path = make(tmp_path)
    message = one_line(path)
    assert expected in message, message


def test_nul_in_the_config_path_is_one_line(tmp_path):
    # The command line refuses it itself (a usage error); load_config names the rule.
    with pytest.raises(ConfigError, match="must not contain a NUL byte"):
        load_config(str(tmp_path / "a\x00b.yaml"))


def test_data_path_fifo_is_refused_by_validate(tmp_path):
    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)
    config = tmp_path / "c.yaml"
    config.write_text(GOOD.replace("../data/salaries.csv", str(fifo)))
    message = one_line(config)
    assert "data.path must name a regular file, not a FIFO (named pipe)" in message


@pytest.mark.parametrize("case", ["fifo", "directory", "alias_bomb", "deep", "huge"])
def test_run_config_goes_through_the_guarded_reader(tmp_path, case):
    run = tmp_path / "run"
    run.mkdir()
    config = run / "config.yaml"
    if case == "fifo":
        os.mkfifo(config)
    elif case == "directory":
        config.mkdir()
    elif case == "alias_bomb":
        bomb = (Path(__file__).parent / "bad_configs" / "alias_bomb.yaml").read_text()
        config.write_text(bomb)
    elif case == "deep":
        config.write_text("u: " + "[" * 3000 + "]" * 3000 + "\n")
    else:
        config.write_text("# x\n" * (MAX_CONFIG_BYTES // 4 + 1))
    with deadline(20), pytest.raises(RunError) as caught:
        load_run_config(run)
    assert "\n" not in str(caught.value) and str(config) in str(caught.value)


def test_a_good_config_still_loads_fast():
    with deadline(10):
        config = load_config(Path(__file__).parents[1] / "configs" / "salary_linear.yaml")
    assert config.name == "salary_linear"
