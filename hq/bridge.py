"""The Mosquitto bridge section that carries one store's summarised topics to the HQ broker.

Mosquitto's own bridge does the carrying (``connection`` in mosquitto.conf(5)): it holds a
persistent session on the HQ broker, queues while the link is down and resends on reconnect.
Only what HQ shows goes out, and nothing comes back in:

- ``store/{sid}/alerts``: every alert transition (QoS 1);
- ``store/{sid}/state/#``: retained state: ``state/agent`` (``online``, or the agent's last will
  ``offline``), ``state/alerts/{id}`` (open alerts), ``state/devices/{id}`` (device health);
- ``store/{sid}/state/bridge``: the bridge's own notification, ``1`` while linked and ``0`` as
  its last will on the HQ broker when the store's broker or network goes away.

Device readings (``store/{sid}/dev/...``) stay in the store: they are chatty and HQ gets their
summaries as time series.
"""

from __future__ import annotations

from dataclasses import dataclass

from storeedge.errors import UsageError

#: Topics bridged out, relative to ``store/{sid}/``, with their QoS.
BRIDGED = (("alerts", 1), ("state/#", 1))
BRIDGE_STATE = "state/bridge"


@dataclass(frozen=True, slots=True)
class HqBroker:
    """Where and how a store's broker reaches the HQ broker."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    cafile: str | None = None  # TLS when given (the HQ broker's CA)
    keepalive: int = 30


def bridge_config(store_id: str, hq: HqBroker) -> str:
    """The mosquitto.conf lines (one ``connection`` section) bridging ``store_id`` to ``hq``."""
    if not store_id or any(c in store_id for c in "/+#\n "):
        raise UsageError(f"store id {store_id!r} cannot name an MQTT topic level")
    for name, value in (("host", hq.host), ("username", hq.username),
                        ("password", hq.password), ("cafile", hq.cafile)):
        if value is not None and ("\n" in value or value != value.strip()):
            raise UsageError(f"HQ broker {name} must be one line without surrounding blanks")
    prefix = f"store/{store_id}/"
    lines = [
        f"# Bridge of store {store_id} to the HQ broker (storeedge hq bridge-config).",
        f"connection hq-{store_id}",
        f"address {hq.host}:{hq.port}",
        "bridge_protocol_version mqttv311",
        # A persistent session on HQ: what the store published while the link was down is
        # delivered when it comes back.
        "cleansession false",
        f"remote_clientid storeedge-bridge-{store_id}",
        f"local_clientid storeedge-bridge-{store_id}-local",
        "try_private true",
        f"keepalive_interval {hq.keepalive}",
        # Reconnect after 2 s, backing off to 30 s while HQ stays away.
        "restart_timeout 2 30",
        "start_type automatic",
        "notifications true",
        f"notification_topic {prefix}{BRIDGE_STATE}",
        "round_robin false",
    ]
    if hq.username:
        lines.append(f"remote_username {hq.username}")
    if hq.password:
        lines.append(f"remote_password {hq.password}")
    if hq.cafile:
        lines += [f"bridge_cafile {hq.cafile}", "bridge_insecure false"]
    lines += [f"topic {prefix}{pattern} out {qos}" for pattern, qos in BRIDGED]
    return "\n".join(lines) + "\n"
