"""Store config: the example validates, and each kind of mistake names file, line and key."""

from pathlib import Path

import pytest

from edge_agent.cli import build_parser, main
from edge_agent.config import DEVICE_TYPES, load_config
from storeedge.errors import ConfigError, ConfigErrors

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
     "devices.0.port", 8, "required, but missing (device s1)"),
    ("devices:\n  - type: shelf_mqtt\n    id: s1\n    lanes: [Z9]\n",
     "devices.0.lanes.0", 10, "lane 'Z9' is not in lanes"),
    ("devices:\n  - type: laser\n    id: s1\n", "devices.0", 8, "laser"),
    ("broker:\n  port: 99999\n", "broker.port", 8, "less than or equal to 65535"),
    ("journal:\n  path: x.db\n  snapshot_secs: 3\n", "journal.snapshot_secs", 9,
     "unknown key; did you mean 'snapshot_seconds'?"),
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


FIVE_MISTAKES = """\
store:
  id: bj-1
  timezone: Asia/Beijing
broker:
  prot: 1883
catalog:
  - {sku: COLA, unit_grams: -350}
lanes:
  - {id: A1, sku: COLA}
devices:
  - {type: shelf_mqtt, id: shelf-b1, lanes: [A1]}
  - {type: shelf_modbus, id: shelf-a2, lanes: [A1], slave: 2, prot: /dev/ttyUSB0}
"""


def test_every_mistake_is_reported_at_once_with_its_line_and_device(tmp_path):
    with pytest.raises(ConfigErrors) as info:
        load_config(write(tmp_path, FIVE_MISTAKES))
    assert [(e.line, e.key) for e in info.value.problems] == [
        (3, "store.timezone"), (5, "broker.prot"), (7, "catalog.0.unit_grams"),
        (12, "devices.1.port"), (12, "devices.1.prot")]
    assert info.value.problems[4].problem == "unknown key; did you mean 'port'? (device shelf-a2)"


def test_check_prints_every_problem(tmp_path, capsys):
    assert main(["check", "--config", str(write(tmp_path, FIVE_MISTAKES))]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "storeedge: config error, 5 problems:"
    assert len(err) == 6 and all(line.startswith(f"  {tmp_path}") for line in err[1:])


def test_checks_across_sections_report_every_conflict(tmp_path):
    text = BASE.replace("lanes:\n  - {id: A1, sku: COLA}\n", """\
lanes:
  - {id: A1, sku: COLA, zone: drinks}
  - {id: A1, sku: TEA}
http:
  tokens:
    - {name: li, role: staff, token_env: LI_TOKEN, zones: [dairy]}
""")
    with pytest.raises(ConfigErrors) as info:
        load_config(write(tmp_path, text))
    assert [(e.key, e.problem) for e in info.value.problems] == [
        ("lanes.1", "duplicate lane id 'A1'"),
        ("lanes.1.sku", "'TEA' is not in catalog (no ERP gives the catalog)"),
        ("http.tokens.0.zones.0", "li works zone 'dairy', which no zone or lane defines")]


def test_secrets_the_config_names_must_be_set_for_the_agent(tmp_path, monkeypatch):
    path = write(tmp_path, BASE + "erp: {kind: tryton, password_env: ERP_PW_FOR_TEST}\n")
    monkeypatch.delenv("ERP_PW_FOR_TEST", raising=False)
    assert load_config(path).erp.kind == "tryton"  # the file itself is fine
    with pytest.raises(ConfigError, match=r"erp\.password_env: environment variable "
                                          r"ERP_PW_FOR_TEST is not set"):
        load_config(path, secrets=True)
    monkeypatch.setenv("ERP_PW_FOR_TEST", "s3cret-enough")
    assert load_config(path, secrets=True).erp.kind == "tryton"


def test_every_option_of_every_command_has_help():
    parser = build_parser()
    [commands] = [a for a in parser._actions if a.choices and a.dest == "command"]
    for name, sub in [("storeedge", parser), *commands.choices.items()]:
        for action in sub._actions:
            assert action.help, f"{name} {'/'.join(action.option_strings) or action.dest}"


REST = BASE + """\
erp:
  kind: rest
  url: https://erp.example.com/
  rest:
    app_key: bj-1
    app_secret_env: ERP_APP_SECRET_FOR_TEST
    signing: hmac_sha256
    commands:
      book_sales:
        path: /open/sales
        lines: {field: items, sku: sku_id, qty: qty, factor: 1000}
      stock_units: {path: /open/stock}
"""


def test_a_rest_erp_mapping_validates_and_names_its_secret(tmp_path, monkeypatch):
    path = write(tmp_path, REST)
    monkeypatch.delenv("ERP_APP_SECRET_FOR_TEST", raising=False)
    rest = load_config(path).erp.rest
    assert rest is not None and rest.commands.book_sales.lines.factor == 1000
    with pytest.raises(ConfigError, match=r"erp\.rest\.app_secret_env: environment variable "
                                          r"ERP_APP_SECRET_FOR_TEST is not set"):
        load_config(path, secrets=True)


@pytest.mark.parametrize(("mistake", "key", "line", "words"), [
    ("{field: items, sku: sku_id, qty: qty,", "erp.rest.commands.book_sales.lines.qtty", 17,
     "unknown key; did you mean 'qty'?"),
    ("signing: hmac_sha256", "erp.rest.signing", 13,
     "Input should be 'md5_sorted' or 'hmac_sha256'"),
    ("      stock_units:", "erp.rest.commands.stock_unit", 18,
     "unknown key; did you mean 'stock_units'?"),
])
def test_a_wrong_rest_mapping_key_is_named(tmp_path, mistake, key, line, words):
    wrong = {"{field: items, sku: sku_id, qty: qty,": "{field: items, sku: sku_id, qtty: qty,",
             "signing: hmac_sha256": "signing: sha1",
             "      stock_units:": "      stock_unit:"}[mistake]
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, REST.replace(mistake, wrong)))
    problems = [(e.key, e.line, e.problem) for e in info.value.problems]
    assert (key, line, words) in problems


def test_kind_rest_without_its_mapping_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"erp\.rest: required for kind rest"):
        load_config(write(tmp_path, BASE + "erp: {kind: rest}\n"))


def test_the_rest_mapping_in_the_erp_docs_is_valid(tmp_path):
    text = (EXAMPLE.parent / "docs" / "erp.md").read_text()
    section = text.split("## A REST ERP", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    rest = load_config(write(tmp_path, BASE + example)).erp.rest
    assert rest is not None and rest.commands.book_count is not None
    assert rest.commands.book_sales.date is not None
