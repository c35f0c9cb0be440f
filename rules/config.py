"""Rule configuration: company defaults, a per-store override file, per-SKU and per-zone
parameters, validated with errors that name the file, the line and the key.

    rules:                 # one section per rule (see docs/rules.md); every key has a default
      low_stock: {severity: warning, escalate_after_seconds: 900}
    skus:                  # per-SKU parameters: any rule's keys, for that SKU only
      MILK-1L: {expiry: {days: 2}}
    zones:                 # per-zone parameters; a SKU's parameters win over its zone's
      freezer: {cold_chain: {minutes: 5}}

``load_rules(defaults, store_file)`` merges the files in order (mappings merge key by key, a later
file's scalar or list replaces an earlier one) and validates the result.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from rules.library import RULES
from rules.library.base import RuleParams
from storeedge.errors import ConfigError
from storeedge.yamlfile import locate, read_yaml

DEFAULTS = Path(__file__).with_name("defaults.yaml")

_STRICT = ConfigDict(extra="forbid", frozen=True)


def _partial(model: type[RuleParams]) -> type[BaseModel]:
    """The same keys and constraints as ``model``, each optional: an override sets only some."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        kind: Any = info.annotation
        if info.metadata:
            kind = Annotated[(kind, *info.metadata)]
        fields[name] = (kind | None, None)
    return create_model(f"{model.__name__}Override", __config__=_STRICT, **fields)


_sections: dict[str, Any] = {name: (cls.Params, cls.Params()) for name, cls in RULES.items()}
RulesSection: type[BaseModel] = create_model("RulesSection", __config__=_STRICT, **_sections)
_overrides: dict[str, Any] = {name: (_partial(cls.Params) | None, None)
                              for name, cls in RULES.items()}
Overrides: type[BaseModel] = create_model("Overrides", __config__=_STRICT, **_overrides)


class RulesConfig(BaseModel):
    """The validated rule configuration. ``params(rule, sku, zone)`` is what a rule runs with."""

    model_config = _STRICT

    rules: RulesSection = RulesSection()  # type: ignore[valid-type]
    skus: dict[str, Overrides] = {}  # type: ignore[valid-type]
    zones: dict[str, Overrides] = {}  # type: ignore[valid-type]

    def params(self, rule: str, sku: str | None = None, zone: str | None = None) -> Any:
        """The rule's parameters for a SKU in a zone: rule section, then zone, then SKU."""
        base: RuleParams = getattr(self.rules, rule)
        update: dict[str, Any] = {}
        for table, key in ((self.zones, zone), (self.skus, sku)):
            over = table.get(key) if key is not None else None
            part = getattr(over, rule, None) if over is not None else None
            if part is not None:
                update.update(part.model_dump(exclude_none=True))
        return base.model_copy(update=update) if update else base


def load_rules(*paths: str | os.PathLike[str]) -> RulesConfig:
    """Read, merge (later files win) and validate rule files; with no paths, the company
    defaults alone. Raises ConfigError naming the file, line and key of the first problem."""
    if not paths:
        paths = (DEFAULTS,)
    docs: list[tuple[str, Any]] = []
    merged: dict[str, Any] = {}
    for path in paths:
        file = str(path)
        data, node = read_yaml(path)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ConfigError(file, "<root>", "must be a mapping (rules, skus, zones)", 1)
        docs.append((file, node))
        merged = _merge(merged, data)
    try:
        return RulesConfig.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        file, line = _where(docs, loc)
        raise ConfigError(file, ".".join(loc) or "<root>", err["msg"] + more, line) from exc


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _where(docs: list[tuple[str, Any]], loc: list[str]) -> tuple[str, int | None]:
    """The file that sets the deepest part of ``loc`` (the last such file: it won the merge),
    and the line there."""
    best: tuple[int, str, int | None] = (-1, docs[-1][0] if docs else "<none>", None)
    for file, node in docs:
        depth, line = locate(node, loc)
        if depth >= best[0]:
            best = (depth, file, line)
    return best[1], best[2]
