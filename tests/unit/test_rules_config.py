"""Rule config files: defaults merged with a store's overrides; errors name file, line and key."""

from __future__ import annotations

import pytest

from rules.config import DEFAULTS, load_rules
from storeedge.errors import ConfigError


def write(tmp_path, text: str, name: str = "store-rules.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_company_defaults_validate_and_store_file_overrides_key_by_key(tmp_path):
    store = write(tmp_path, "rules:\n  low_stock:\n    severity: critical\n"
                            "skus:\n  MILK:\n    expiry: {days: 1}\n"
                            "zones:\n  dairy:\n    expiry: {days: 2, role: manager}\n")
    cfg = load_rules(DEFAULTS, store)
    assert cfg.params("low_stock").severity == "critical"
    assert cfg.params("low_stock").escalate_after_seconds == 900  # kept from the defaults
    assert cfg.params("expiry").days == 3
    assert cfg.params("expiry", zone="dairy").days == 2
    milk = cfg.params("expiry", sku="MILK", zone="dairy")
    assert (milk.days, milk.role) == (1, "manager")  # the SKU wins, the zone fills in


@pytest.mark.parametrize(("text", "line", "key", "words"), [
    ("rules:\n  low_stock:\n    severity: loud\n", 3, "rules.low_stock.severity", "warning"),
    ("rules:\n  cold_chain:\n    minutes: -1\n", 3, "rules.cold_chain.minutes", "greater"),
    ("rules:\n  low_stok: {}\n", 2, "rules.low_stok", "not permitted"),
    ("skus:\n  COLA:\n    low_stock:\n      threshold: many\n", 4,
     "skus.COLA.low_stock.threshold", "integer"),
    ("zones:\n  freezer:\n    cold_chain:\n      minuets: 5\n", 4,
     "zones.freezer.cold_chain.minuets", "not permitted"),
])
def test_errors_name_the_store_file_line_and_key(tmp_path, text, line, key, words):
    store = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_rules(DEFAULTS, store)
    err = info.value
    assert (err.file, err.line, err.key) == (str(store), line, key)
    assert words in err.problem
    assert str(err).startswith(f"{store}:{line}: {key}: ")


def test_an_error_in_the_defaults_names_the_defaults_file(tmp_path):
    defaults = write(tmp_path, "rules:\n  expiry:\n    days: soon\n", "defaults.yaml")
    store = write(tmp_path, "rules:\n  low_stock: {severity: info}\n")
    with pytest.raises(ConfigError) as info:
        load_rules(defaults, store)
    assert (info.value.file, info.value.line, info.value.key) == (
        str(defaults), 3, "rules.expiry.days")


def test_bad_yaml_and_missing_files(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_rules(write(tmp_path, "rules:\n  low_stock: [\n"))
    assert info.value.key == "<yaml>" and info.value.line == 3
    with pytest.raises(ConfigError) as info:
        load_rules(write(tmp_path, "- a list\n"))
    assert info.value.key == "<root>"
    with pytest.raises(ConfigError, match="cannot read"):
        load_rules(tmp_path / "absent.yaml")


def test_an_empty_store_file_means_the_defaults(tmp_path):
    assert load_rules(DEFAULTS, write(tmp_path, "")) == load_rules()
