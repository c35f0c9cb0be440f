"""The broker users, ACL and password hashes ``storeedge broker-config`` writes."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from edge_agent.broker_security import hash_password, read_credentials, store_users
from edge_agent.cli import main
from edge_agent.config import StoreConfig, load_config
from storeedge.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "store.example.yaml"


def test_password_hash_matches_mosquitto_passwd() -> None:
    # Written by `mosquitto_passwd -b -c pw alice secret` (Mosquitto 2.0.11).
    golden = ("$7$101$bTdF3H+ZUzR4T5/g$3Ni+GefO0h4eI9eaXSEutlQ7XvtzxT3r755F6kOeyUmXZFG0oakpbzq8jFZC"
              "h71fozfslfd+oI/aWP5ZN51giw==")
    assert hash_password("secret", base64.b64decode("bTdF3H+ZUzR4T5/g")) == golden
    assert hash_password("secret") != hash_password("secret")  # a fresh salt each time


def test_users_and_what_each_may_do() -> None:
    users = {u.name: u for u in store_users(load_config(EXAMPLE))}
    sid = "bj-chaoyang-01"
    assert users[f"{sid}-agent"].acl[0] == ("readwrite", f"store/{sid}/#")
    # Only MQTT devices get a user; a serial shelf or a camera never talks to the broker.
    assert f"{sid}-shelf-a1" not in users and f"{sid}-cam-1" not in users
    assert users[f"{sid}-shelf-b1"].acl == (("readwrite", f"store/{sid}/dev/shelf-b1/#"),)
    # A Zigbee2MQTT sensor publishes on its own third-party topics, which the agent reads.
    fridge = users[f"{sid}-fridge-dairy"].acl
    assert ("write", "zigbee2mqtt/fridge/dairy-1") in fridge
    assert ("read", "zigbee2mqtt/fridge/dairy-1") in users[f"{sid}-agent"].acl
    assert users[f"{sid}-hq"].acl == (("read", f"store/{sid}/alerts"),
                                      ("read", f"store/{sid}/state/#"))


def test_a_device_id_that_cannot_be_a_topic_is_refused() -> None:
    config = StoreConfig.model_validate({
        "store": {"id": "s1"}, "catalog": [{"sku": "X", "unit_grams": 1}],
        "lanes": [{"id": "L1", "sku": "X"}],
        "devices": [{"type": "shelf_mqtt", "id": "shelf+1", "lanes": ["L1"]}]})
    with pytest.raises(ConfigError, match=r"devices\.0\.id"):
        store_users(config)


def test_cli_writes_certs_and_broker_config_and_keeps_passwords(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]
                                                                ) -> None:
    certs, out = tmp_path / "certs", tmp_path / "broker"
    assert main(["certs", "--out", str(certs), "--store", "bj-chaoyang-01",
                 "--host", "broker.store.local", "--clients-of", str(EXAMPLE)]) == 0
    assert (certs / "clients" / "bj-chaoyang-01-agent.crt").is_file()
    assert (certs / "ca.key").stat().st_mode & 0o077 == 0
    argv = ["broker-config", "--config", str(EXAMPLE), "--out", str(out), "--certs", str(certs),
            "--client-certs"]
    assert main(argv) == 0
    first = read_credentials(out / "credentials")
    assert main(argv) == 0
    assert read_credentials(out / "credentials") == first
    conf = (out / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "require_certificate true" in conf
    assert f"certfile {(certs / 'server.crt').resolve()}" in conf
    for name in ("passwd", "acl", "credentials"):
        assert (out / name).stat().st_mode & 0o077 == 0
    # Without certificates the listener would be plain: say what is missing instead.
    assert main(["broker-config", "--config", str(EXAMPLE), "--out", str(out), "--certs",
                 str(tmp_path / "nowhere")]) == 2
    assert "run `storeedge certs` first" in capsys.readouterr().err
