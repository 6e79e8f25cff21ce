"""Config text -> plain data, keeping the YAML nodes so that messages can name a line.

PyYAML's safe loader only, so a config is plain data and can never import or run code. Before
anything is constructed the node tree is checked: no key twice in one mapping, every key a scalar,
every merge (``<<``) of mappings, no nesting deeper than ``MAX_YAML_DEPTH`` (checked while
composing, before PyYAML's recursive composer can overflow the stack) and no alias bomb
("billion laughs") expanding beyond ``MAX_YAML_NODES``. A scalar that PyYAML reads as a number,
date or boolean but cannot build (``0b_``, ``2001-13-45``) is named with its line.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from builder.config.names import MAX_YAML_DEPTH, MAX_YAML_NODES
from builder.errors import ConfigError

# A key path into the document: mapping keys and sequence indexes.
KeyPath = tuple[Any, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"
# What a scalar that fails to build was read as, by its tag.
_SCALAR_KINDS = {
    "tag:yaml.org,2002:int": "integer",
    "tag:yaml.org,2002:float": "number",
    "tag:yaml.org,2002:timestamp": "date",
    "tag:yaml.org,2002:bool": "boolean",
}
# What PyYAML's scalar constructors raise on text their resolver matched (int('', 2),
# datetime.date(2001, 13, 45), a regex that did not match, ...): never a bug of the config's.
_BUILD_ERRORS = (ValueError, TypeError, ArithmeticError, LookupError, AttributeError)


class _Loader(yaml.SafeLoader):
    """The safe loader, with a depth limit and located build errors.

    A subclass, so that nothing is registered on PyYAML's global loader.
    """

    where = "<config>"
    _depth = 0
    _nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # PyYAML composes recursively: refuse a collection nested too deep before descending
        # into it, rather than let the composer hit RecursionError.
        if self._depth >= MAX_YAML_DEPTH and (
            self.check_event(yaml.SequenceStartEvent) or self.check_event(yaml.MappingStartEvent)
        ):
            raise _too_deep(self.where, self.peek_event().start_mark)
        # Stop a document of many plain nodes while composing it, not after (seconds later).
        self._nodes += 1
        if self._nodes > MAX_YAML_NODES:
            raise _too_many(self.where, self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except _BUILD_ERRORS as err:
            raise _build_error(node, err, self.where) from None


# YAML 1.1 reads 1e-4 as a string (it wants 1.0e-4); learning rates are written that way, so
# read them as YAML 1.2 and JSON do. Exponent floats only: everything else keeps 1.1 rules.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml(text: str, where: str) -> tuple[Any, yaml.Node]:
    """Parse one YAML (or JSON) document into plain data and its root node.

    Args:
        text: the document.
        where: the file name (or ``<config>``) that messages start with.

    Returns:
        ``(data, node)``: the constructed data, and the node tree that ``line_of`` reads.

    Raises:
        ConfigError: the text is empty, not YAML, uses a tag that builds objects, has a scalar
            PyYAML cannot build, a key that is not a scalar, a merge of something else than
            mappings, a key twice in one mapping, nests deeper than ``MAX_YAML_DEPTH`` or
            expands beyond ``MAX_YAML_NODES`` nodes.
    """
    loader = None
    try:
        loader = _Loader(text)  # refuses characters YAML does not allow (a ReaderError)
        loader.where = where
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(
                f"{where} is empty: a config is a mapping with keys name, data, model, training."
            )
        _check_nodes(node, where)
        data = loader.construct_document(node)
    except yaml.constructor.ConstructorError as err:
        mark = err.problem_mark or err.context_mark
        problem = _one_line(err.problem or "")
        if "constructor for the tag" in problem:
            raise ConfigError(
                f"{where}: YAML tags that build Python objects or other types are not allowed; "
                f"a config is plain data. Received: {problem}{_at(mark)}"
            ) from None
        context = _one_line(err.context or "")
        raise ConfigError(
            f"{where} is not valid YAML data: {context + ': ' if context else ''}"
            f"{problem or 'cannot be built'}{_at(mark)}"
        ) from None
    except yaml.MarkedYAMLError as err:
        problem = _one_line(err.problem or "syntax error")
        context = f"; {_one_line(err.context)}{_at(err.context_mark)}" if err.context else ""
        raise ConfigError(
            f"{where} is not valid YAML: {problem}{_at(err.problem_mark)}{context}"
        ) from None
    except yaml.reader.ReaderError as err:
        raise ConfigError(
            f"{where} is not valid YAML: {_one_line(err.reason)}. Received: character "
            f"#x{err.character if isinstance(err.character, int) else 0:04x} "
            f"at offset {err.position}"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{where} is not valid YAML: {_one_line(str(err))}") from None
    except RecursionError:  # a safety net: the depth limits above come first
        raise ConfigError(
            f"{where}: the document must nest at most {MAX_YAML_DEPTH} mappings and lists "
            "deep. Received: deeper"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, node


def _at(mark: Any) -> str:
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _short(value: str, limit: int = 60) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _too_deep(where: str, mark: Any) -> ConfigError:
    return ConfigError(
        f"{where}: the document must nest at most {MAX_YAML_DEPTH} mappings and lists deep "
        f"(aliases included). Received: deeper{_at(mark)}"
    )


def _too_many(where: str, mark: Any) -> ConfigError:
    return ConfigError(
        f"{where}: the document must expand to at most {MAX_YAML_NODES:,} YAML nodes "
        f"(aliases included). Received: more than that{_at(mark)}"
    )


def _build_error(node: yaml.Node, err: Exception, where: str) -> ConfigError:
    """A scalar PyYAML matched (as a number, date ...) but could not build, as one line."""
    kind = _SCALAR_KINDS.get(node.tag, f"value of tag {node.tag}")
    reason = _one_line(str(err)) if isinstance(err, ValueError | ArithmeticError) else ""
    if len(reason) > 80:
        reason = reason[:77] + "..."
    value = _short(node.value) if isinstance(node, yaml.ScalarNode) else f"a {node.id}"
    return ConfigError(
        f"{where}: a value read as a YAML {kind} must be a valid one"
        f"{f' ({reason})' if reason else ''}; quote it to make it text. "
        f"Received: {value}{_at(node.start_mark)}"
    )


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return f"the scalar {_short(node.value)}"
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


def _check_nodes(root: yaml.Node, where: str) -> None:
    """Refuse alias bombs, deep or recursive aliases, odd keys and duplicates before building.

    Aliases share nodes, so the composed tree stays small while its expansion can be
    exponential (or, through a recursive alias, infinite); counting the expansion and its depth
    with memoisation is cheap and bounded, and the recursion here never goes deeper than
    ``MAX_YAML_DEPTH``.
    """
    done: dict[int, tuple[int, int]] = {}  # node id -> (expanded size, height)
    active: set[int] = set()

    def visit(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in done:
            size, height = done[key]
            if depth + height - 1 > MAX_YAML_DEPTH:
                raise _too_deep(where, node.start_mark)
            return size, height
        if isinstance(node, yaml.ScalarNode):
            return 1, 0
        if key in active:
            raise ConfigError(
                f"{where}: an alias must not refer to a mapping or list that contains it. "
                f"Received: a recursive alias{_at(node.start_mark)}"
            )
        if depth > MAX_YAML_DEPTH:
            raise _too_deep(where, node.start_mark)
        active.add(key)
        total, height = 1, 0
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for k, v in node.value:
                _check_key(k, v, seen)
                for child in (k, v):
                    size, sub = visit(child, depth + 1)
                    total += size
                    height = max(height, sub)
                if total > MAX_YAML_NODES:
                    break
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                size, sub = visit(item, depth + 1)
                total += size
                height = max(height, sub)
                if total > MAX_YAML_NODES:
                    break
        active.discard(key)
        if total > MAX_YAML_NODES:
            raise _too_many(where, node.start_mark)
        done[key] = (total, height + 1)
        return done[key]

    def _check_key(k: yaml.Node, v: yaml.Node, seen: dict[Any, int]) -> None:
        if not isinstance(k, yaml.ScalarNode):
            raise ConfigError(
                f"{where}: a mapping key must be a name or a number, not a list or mapping. "
                f"Received: {_kind(k)} as a key{_at(k.start_mark)}"
            )
        if k.tag == _MERGE_TAG:
            items = v.value if isinstance(v, yaml.SequenceNode) else [v]
            bad = next((n for n in items if not isinstance(n, yaml.MappingNode)), None)
            if bad is not None:
                raise ConfigError(
                    f"{where}: a merge key '<<' must be given a mapping or a list of mappings. "
                    f"Received: {_kind(bad)}{_at(bad.start_mark)}"
                )
        if k.value in seen:
            raise ConfigError(
                f"{where}: key '{k.value}' appears twice in one mapping "
                f"(line {k.start_mark.line + 1}; first on line {seen[k.value]})"
            )
        seen[k.value] = k.start_mark.line + 1

    visit(root, 1)


def line_of(node: yaml.Node | None, loc: KeyPath, *, key_line: bool = False) -> int | None:
    """The 1-based YAML line of a key path: the value's line, or the key's with ``key_line``.

    Args:
        node: the document's root node (``None``: no lines are known).
        loc: the key path, e.g. ``("model", "layers", 1, "units")``.
        key_line: the key's line rather than the value's (for a key that is not allowed).

    Returns:
        The line; the nearest enclosing mapping's line when the path leaves the document;
        ``None`` when nothing is known.
    """
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
