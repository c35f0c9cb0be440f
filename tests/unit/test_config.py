"""Store config: the example validates, and each kind of mistake names file, line and key."""

from pathlib import Path

import pytest

from edge_agent.config import DEVICE_TYPES, load_config
from storeedge.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "store.example.yaml"


def test_the_commented_example_is_valid():
    config = load_config(EXAMPLE)
    assert config.store.id == "bj-chaoyang-01"
    assert {d.type for d in config.devices} == DEVICE_TYPES  # one of every kind


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "store.yaml"
    path.write_text(text)
    return path


BASE = """\
store:
  id: bj-1
catalog:
  - {sku: COLA, unit_grams: 350}
lanes:
  - {id: A1, sku: COLA}
"""


@pytest.mark.parametrize(("extra", "key", "line", "words"), [
    ("devices:\n  - type: shelf_modbus\n    id: s1\n    lanes: [A1]\n",
     "devices.0.port", 8, "Field required"),
    ("devices:\n  - type: shelf_mqtt\n    id: s1\n    lanes: [Z9]\n",
     "devices.0.lanes.0", 10, "lane 'Z9' is not in lanes"),
    ("devices:\n  - type: laser\n    id: s1\n", "devices.0", 8, "laser"),
    ("broker:\n  port: 99999\n", "broker.port", 8, "less than or equal to 65535"),
    ("journal:\n  path: x.db\n  snapshot_secs: 3\n", "journal.snapshot_secs", 9,
     "Extra inputs are not permitted"),
])
def test_errors_name_the_file_line_and_key(tmp_path, extra, key, line, words):
    path = write(tmp_path, BASE + extra)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.file == str(path)
    assert err.key == key
    assert words in err.problem
    assert err.line == line
    assert str(err).startswith(f"{path}:{line}: {key}: ")


def test_a_lane_with_an_unknown_sku_is_refused_without_an_erp(tmp_path):
    path = write(tmp_path, BASE.replace("sku: COLA}", "sku: NOPE}"))
    with pytest.raises(ConfigError, match=r"lanes\.0\.sku: 'NOPE' is not in catalog"):
        load_config(path)


def test_bad_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "store:\n  id: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "<yaml>" and info.value.line is not None


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
