"""The deployment files under docker/, checked without building images (no registry here): the
compose files parse and name files that exist, every Grafana panel's query returns series from a
real VictoriaMetrics holding a store's data, the image installs the way scripts/setup.sh does and
carries every package, and the systemd unit runs commands the CLI has."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import time
import tomllib
from pathlib import Path

import httpx
import pytest
import yaml

from cloud_bridge import tsdb
from edge_agent.cli import main
from edge_agent.services import Service
from storeedge.events import Alert, AlertState, Sale, Severity
from tests.fixtures.victoria import victoria_url
from tests.integration.hq_chain import write_lines

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = [DOCKER / "store" / "compose.yaml", DOCKER / "hq" / "compose.yaml"]


@pytest.mark.parametrize("path", COMPOSE, ids=lambda p: p.parent.name)
def test_compose_files_parse_and_name_existing_files(path: Path) -> None:
    compose = yaml.safe_load(path.read_text())
    named_volumes = set(compose.get("volumes") or {})
    assert compose["services"]
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, name
        build = service.get("build")
        if build:
            context = (path.parent / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), name
            dockerfile = (context / build["dockerfile"]).read_text()
            assert f"AS {build['target']}" in dockerfile, f"{name}: no target {build['target']}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source in named_volumes:
                continue
            assert source.startswith("./"), f"{name}: {volume}"
            assert (path.parent / source).exists(), f"{name}: {source} does not exist"
        for env_file in service.get("env_file", []):
            assert (path.parent / env_file).is_file(), f"{name}: {env_file} does not exist"
        for dep in service.get("depends_on", []):
            assert dep in compose["services"], f"{name} depends on unknown {dep}"


def secrets_of(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Set every variable a config names for a secret (``*_env``), as the deployment's env
    file or credentials would: `check` refuses a config whose secrets are unset."""
    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if str(key).endswith("_env") and isinstance(value, str):
                    monkeypatch.setenv(value, "Xq7Lw2Zp9k-dummy-secret-for-the-check-0")
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
    walk(yaml.safe_load(config.read_text()))


def test_store_compose_bridges_with_the_generated_config(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((DOCKER / "store" / "compose.yaml").read_text())
    command = compose["services"]["bridge-config"]["command"][0]
    argv = shlex.split(command.replace("$$", "$").split(">")[0])
    assert argv[:3] == ["storeedge", "hq", "bridge-config"]
    store = DOCKER / "store" / "store.yaml"
    secrets_of(store, monkeypatch)
    assert main(["check", "--config", str(store)]) == 0
    argv = [store if a == "/etc/storeedge/store.yaml" else a for a in argv[1:]]
    argv = ["hq.example" if a == "$STOREEDGE_HQ_HOST" else str(a) for a in argv]
    argv = [a for a in argv if not a.startswith("--hq-password-env")]
    if "STOREEDGE_BRIDGE_PASSWORD" in argv:
        argv.remove("STOREEDGE_BRIDGE_PASSWORD")
    assert main(argv) == 0
    conf = capsys.readouterr().out
    assert "address hq.example:8883" in conf
    mosquitto = (DOCKER / "store" / "mosquitto.conf").read_text()
    assert "include_dir /mosquitto/config/conf.d" in mosquitto


def test_the_image_installs_as_setup_sh_does_and_carries_every_package() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    runs = [line for line in dockerfile.splitlines() if line.startswith("RUN ")]
    assert runs and runs[0].startswith("RUN STOREEDGE_SETUP_RUNTIME=1 bash scripts/setup.sh")
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert 'runtime="${STOREEDGE_SETUP_RUNTIME:-0}"' in setup
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in
                pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    copied = set(re.findall(r"^COPY (\w+)/ ", dockerfile, re.MULTILINE))
    assert set(packages) <= copied, f"not in the image: {set(packages) - copied}"
    assert "USER storeedge" in dockerfile
    assert dockerfile.count("HEALTHCHECK") == 2


def test_the_systemd_unit_runs_commands_the_cli_has(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(DOCKER / "systemd" / "storeedge-agent.service")
    service = unit["Service"]
    assert service["User"] == "storeedge" and service["Restart"] == "always"
    for key in ("ExecStartPre", "ExecStart"):
        argv = shlex.split(service[key])
        assert argv[0].endswith("/.venv/bin/storeedge"), key
        config = tmp_path / "store.yaml"
        config.write_text((ROOT / "store.example.yaml").read_text())
        secrets_of(config, monkeypatch)
        args = [str(config) if a == "/etc/storeedge/store.yaml" else a for a in argv[1:]]
        if args[0] == "check":
            assert main(args) == 0


def test_every_grafana_panel_query_returns_series(victoria: Service, store_id: str) -> None:
    now = time.time()
    lines: list[str] = []
    points = tsdb.Points(store_id, region="north", city="Beijing")
    # A sample every 20 s for the last 2 minutes: VictoriaMetrics aligns a range query's end
    # down to its step (60 s), so a panel reading the last minute before that end needs samples
    # up to two minutes old; an instant query at ``now`` reads the last minute itself. With
    # samples only in the last 50 s, a run whose ``now`` fell in a minute's last 10 s found none.
    for ago in (110, 90, 70, 50, 30, 10):
        lines += points.lanes([("A1-1", "COLA-330", 0, 0.0),
                               ("A1-2", "CHIPS-70", 4, 300.0)], now - ago)
        lines.append(points.agent(now - ago, {"readings_total": 10, "erp_backlog": 1,
                                              "tsdb_backlog": 0, "devices_offline": 1}))
        lines += points.devices({"shelf-a1": {"type": "shelf_mqtt", "state": "offline"},
                                 "fridge-1": {"type": "zigbee2mqtt", "state": "online"}},
                                now - ago)
        lines.append(points.climate("chill-1", {"device": "fridge-1", "ts": now - ago,
                                                "temperature": 4.5, "humidity": 60.0}))
    # Older than a range step: VictoriaMetrics aligns a range query's end down to its step.
    sale = Sale(store_id=store_id, source="pos", received_ts=now - 150, sku="COLA-330", qty=2,
                txn_id="t1")
    lines += points.sales([(sale, 7.0)], now - 150)
    opened = now - 150
    lines += points.alerts([Alert(
        store_id=store_id, source="rules", received_ts=ts, alert_id="a1",
        rule="out_of_stock", severity=Severity.CRITICAL, subject="A1-1", message="empty",
        state=state, location="A1-1", sku="COLA-330",
        detail={"transition": transition, "opened_at": opened, "claimed_at": now - 100})
        for ts, state, transition in ((opened, AlertState.OPEN, "opened"),
                                      (now - 100, AlertState.CLAIMED, "claimed"),
                                      (now - 15, AlertState.RESOLVED, "resolved"))])
    write_lines(victoria_url(victoria), lines)

    dashboards = sorted((DOCKER / "hq" / "grafana" / "dashboards").glob("*.json"))
    assert dashboards
    checked = 0
    with httpx.Client(base_url=victoria_url(victoria), timeout=10) as client:
        for path in dashboards:
            for panel in json.loads(path.read_text())["panels"]:
                for target in panel["targets"]:
                    expr = target["expr"].replace("$__range", "1h").replace("$__interval", "1m")
                    if target.get("instant"):
                        resp = client.get("/api/v1/query", params={"query": expr, "time": now})
                    else:
                        resp = client.get("/api/v1/query_range", params={
                            "query": expr, "start": now - 3600, "end": now, "step": 60})
                    body = resp.json()
                    assert body["status"] == "success", (panel["title"], expr, body)
                    result = body["data"]["result"]
                    assert result, f"{panel['title']}: {expr} returned no series"
                    if "store" in expr and "by (store)" in expr:
                        assert any(s["metric"].get("store") == store_id for s in result), expr
                    checked += 1
    assert checked >= 10
    provisioning = yaml.safe_load((DOCKER / "hq" / "grafana" / "provisioning" / "datasources"
                                   / "victoriametrics.yaml").read_text())
    assert provisioning["datasources"][0]["uid"] == "storeedge-vm"


def test_the_hq_config_for_the_containers_is_valid() -> None:
    from hq.config import load_config

    config = load_config(DOCKER / "hq" / "hq.yaml")
    compose = yaml.safe_load((DOCKER / "hq" / "compose.yaml").read_text())
    assert config.broker.host in compose["services"]
    assert config.timeseries.url.split("//")[1].split(":")[0] in compose["services"]
    assert config.erp.url.split("//")[1].split(":")[0] in compose["services"]
