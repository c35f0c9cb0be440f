"""YAML files whose mistakes are reported by file, line and key (store configs, rule files)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from storeedge.errors import ConfigError


def read_yaml(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """The file's data and its node tree (for ``locate``); ConfigError when it cannot be read
    or is not YAML."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(file, "<file>", f"cannot read: {exc.strerror or exc}") from exc
    try:
        return yaml.safe_load(text), yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = f"not valid YAML: {getattr(exc, 'problem', exc)}"
        raise ConfigError(file, "<yaml>", problem, line) from exc


def locate(node: Any, loc: list[str]) -> tuple[int, int | None]:
    """How many parts of the key path ``loc`` exist in the node tree, and the 1-based line of the
    deepest one (a mapping key's own line: its value may start on the next)."""
    line = node.start_mark.line + 1 if node is not None else None
    depth = 0
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            line = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
        depth += 1
    return depth, line
