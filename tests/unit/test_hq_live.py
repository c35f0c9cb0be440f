"""HQ's view of each store from the bridged topics, fed message by message."""

from __future__ import annotations

import json

from hq.live import ChainLive


def alert(state: str, severity: str = "warning") -> bytes:
    return json.dumps({"alert_id": "a1", "rule": "low_stock", "state": state,
                       "severity": severity, "received_ts": 100.0}).encode()


def test_online_needs_the_agent_online_and_the_bridge_not_down() -> None:
    live = ChainLive(["s1"])
    store = live.stores["s1"]
    assert not store.online  # never heard
    live.handle("store/s1/state/agent", b"online", True, 1.0)
    assert store.online and store.last_message is None  # retained: not "seen now"
    live.handle("store/s1/state/bridge", b"0", False, 2.0)
    assert not store.online and store.last_message == 2.0
    live.handle("store/s1/state/bridge", b"1", False, 3.0)
    assert store.online
    live.handle("store/s1/state/agent", b"offline", False, 4.0)
    assert not store.online


def test_open_alerts_follow_their_retained_state() -> None:
    live = ChainLive(["s1"])
    alerts = live.stores["s1"].alerts
    live.handle("store/s1/state/alerts/a1", alert("open"), True, 1.0)
    assert alerts["a1"]["state"] == "open"
    live.handle("store/s1/state/alerts/a1", alert("claimed"), False, 2.0)
    assert alerts["a1"]["state"] == "claimed"
    live.handle("store/s1/state/alerts/a1", alert("resolved"), False, 3.0)
    assert alerts == {}
    live.handle("store/s1/state/alerts/a1", alert("open"), False, 4.0)
    live.handle("store/s1/state/alerts/a1", b"", False, 5.0)  # an emptied retained message
    assert alerts == {}


def test_devices_offline_are_listed() -> None:
    live = ChainLive(["s1"])
    live.handle("store/s1/state/devices/shelf-2", b'{"state": "offline"}', True, 1.0)
    live.handle("store/s1/state/devices/shelf-1", b'{"state": "online"}', True, 1.0)
    live.handle("store/s1/state/devices/cam-1", b'{"state": "degraded"}', True, 1.0)
    assert live.stores["s1"].devices_offline() == ["cam-1", "shelf-2"]


def test_other_stores_and_garbage_are_counted_not_kept() -> None:
    live = ChainLive(["s1"])
    live.handle("store/s9/state/agent", b"online", True, 1.0)
    live.handle("store/s1/state/alerts/a1", b"{not json", False, 1.0)
    live.handle("store/s1/state/devices/d1", b"[1, 2]", False, 1.0)
    assert live.unknown_store_messages == 1 and live.bad_payloads == 2
    assert "s9" not in live.stores and live.stores["s1"].alerts == {}
