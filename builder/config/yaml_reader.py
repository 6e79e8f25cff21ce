"""Config text -> plain data, keeping the YAML nodes so that messages can name a line.

PyYAML's safe loader only, so a config is plain data and can never import or run code. Before
anything is constructed the node tree is checked: no key twice in one mapping, and no alias bomb
("billion laughs") expanding beyond ``MAX_YAML_NODES``.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from builder.config.names import MAX_YAML_NODES
from builder.errors import ConfigError

# A key path into the document: mapping keys and sequence indexes.
KeyPath = tuple[Any, ...]


class _Loader(yaml.SafeLoader):
    """The safe loader; kept as a subclass so nothing is registered on PyYAML's global one."""


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
        ConfigError: the text is empty, not YAML, uses a tag that builds objects, repeats a key
            in one mapping or expands beyond ``MAX_YAML_NODES`` nodes.
    """
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
