"""Who may do what on a store's broker: the MQTT users of a store and their ACLs, written as a
Mosquitto config, password file and ACL file that Mosquitto enforces.

Users of store ``{sid}`` (the ACL denies everything not listed; anonymous clients are refused):

- ``{sid}-agent`` (or ``broker.username``): read and write ``store/{sid}/#``; read the
  third-party topics its devices publish on;
- ``{sid}-{device}``, one per MQTT device: read and write ``store/{sid}/dev/{device}/#``; write
  its own third-party topics (a Zigbee2MQTT sensor's ``zigbee2mqtt/{name}``);
- ``{sid}-pos``: write ``store/{sid}/pos/#``;
- ``{sid}-hq``, HQ's bridge: read ``store/{sid}/alerts`` and ``store/{sid}/state/#`` only.

So a device cannot publish alerts, state or another device's readings, and no user of one store
reaches another store's subtree, even when one broker serves several stores.

The HQ broker (``write_hq_broker_config``) has ``bridge-{sid}`` per store, whose bridge may write
``store/{sid}/#`` only, and ``storeedge-hq``, the HQ service, which reads ``store/#``.

Passwords are random (32 bytes, URL-safe) and kept in ``credentials`` (``user password`` per line,
mode 0600) beside the generated files; a second run keeps them. The password file holds
Mosquitto's PBKDF2-SHA512 hashes (``$7$``), the format ``mosquitto_passwd`` writes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge_agent import device_kinds
from edge_agent.certs import StoreCerts
from edge_agent.config import StoreConfig
from storeedge.errors import ConfigError

Access = Literal["read", "write", "readwrite"]
Role = Literal["agent", "device", "pos", "hq"]

#: What every store broker runs with, whatever its security.
TUNING = """\
# Store traffic is bursty: never drop messages to a subscriber that falls behind for a moment.
max_inflight_messages 1000
max_queued_messages 1000000
max_queued_bytes 0
# Without this, TCP delayed-ACK adds 20-40 ms to every alert at a few thousand msg/s.
set_tcp_nodelay true
log_dest stdout
log_type error
log_type warning
log_type notice
"""

# Characters an ACL line or an MQTT topic filter cannot carry literally.
_UNSAFE = re.compile(r"[\s+#\x00]")
_PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default; the passwords are random 256-bit tokens


@dataclass(frozen=True)
class BrokerUser:
    name: str
    role: Role
    store_id: str
    acl: tuple[tuple[Access, str], ...]


@dataclass(frozen=True)
class BrokerFiles:
    """What ``write_broker_config`` wrote, and every user's password."""

    conf: Path
    password_file: Path
    acl_file: Path
    credentials_file: Path
    users: tuple[BrokerUser, ...]
    passwords: dict[str, str]

    def user(self, store_id: str, role: Role, device: str | None = None) -> str:
        """The name of a store's user of ``role`` (for a device, of that device)."""
        for user in self.users:
            if user.store_id == store_id and user.role == role and (
                    device is None or user.name == device_user(store_id, device)):
                return user.name
        raise KeyError(f"store {store_id} has no {role} user {device or ''}".rstrip())


def device_user(store_id: str, device_id: str) -> str:
    return f"{store_id}-{device_id}"


def agent_user(config: StoreConfig) -> str:
    return config.broker.username or f"{config.store.id}-agent"


def _device_topics(device: Any, store_id: str) -> list[str]:
    """The topics an MQTT device publishes on outside its own ``store/{sid}/dev/{id}/`` subtree
    (a third-party format's own topics)."""
    topics = [device_kinds.topic_of(device, store_id)]
    feed = device_kinds.KINDS[device.type]
    if isinstance(feed, device_kinds.MqttFeed) and feed.availability:
        topics.append(getattr(device, feed.availability[0]))
    own = f"store/{store_id}/dev/{device.id}/"
    return [t for t in topics if not t.startswith(own)]


def store_users(config: StoreConfig) -> list[BrokerUser]:
    """The broker users of one store and what each may do."""
    sid = config.store.id
    prefix = f"store/{sid}/"
    agent_reads: list[tuple[Access, str]] = []
    devices: list[BrokerUser] = []
    for i, device in enumerate(config.devices):
        if not isinstance(device_kinds.KINDS[device.type], device_kinds.MqttFeed):
            continue  # a serial or camera device never talks to the broker
        if _UNSAFE.search(device.id):
            raise ConfigError(str(config.source or "<config>"), f"devices.{i}.id",
                              f"{device.id!r} cannot be part of an MQTT topic")
        acl: list[tuple[Access, str]] = [("readwrite", f"{prefix}dev/{device.id}/#")]
        for topic in _device_topics(device, sid):
            if _UNSAFE.search(topic):
                raise ConfigError(str(config.source or "<config>"), f"devices.{i}",
                                  f"topic {topic!r} cannot be an ACL entry")
            acl.append(("write", topic))
            agent_reads.append(("read", topic))
        devices.append(BrokerUser(device_user(sid, device.id), "device", sid, tuple(acl)))
    return [
        BrokerUser(agent_user(config), "agent", sid,
                   (("readwrite", f"{prefix}#"), *agent_reads)),
        *devices,
        BrokerUser(f"{sid}-pos", "pos", sid, (("write", f"{prefix}pos/#"),)),
        BrokerUser(f"{sid}-hq", "hq", sid,
                   (("read", f"{prefix}alerts"), ("read", f"{prefix}state/#"))),
    ]


def hash_password(password: str, salt: bytes | None = None,
                  iterations: int = _PBKDF2_ITERATIONS) -> str:
    """Mosquitto's ``$7$`` password hash: PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte key."""
    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return (f"$7${iterations}${base64.b64encode(salt).decode()}"
            f"${base64.b64encode(digest).decode()}")


def render_acl(users: Iterable[BrokerUser]) -> str:
    lines = ["# Generated by `storeedge broker-config`; regenerate rather than edit.",
             "# No topic lines before the first user: anonymous clients get nothing."]
    for user in users:
        lines.append("")
        lines.append(f"user {user.name}")
        lines.extend(f"topic {access} {topic}" for access, topic in user.acl)
    return "\n".join(lines) + "\n"


def render_conf(*, port: int, host: str | None, password_file: Path, acl_file: Path,
                persistence_dir: Path, certs: StoreCerts | None = None,
                client_certs: bool = False, run_as: str | None = None) -> str:
    """A Mosquitto 2 config: one listener, TLS when ``certs`` are given (and client
    certificates required with ``client_certs``), passwords and ACLs for every client."""
    if client_certs and certs is None:
        raise ConfigError("<command line>", "--client-certs", "client certificates need TLS "
                          "certificates (--certs DIR)")
    lines = [
        "# Generated by `storeedge broker-config`; regenerate rather than edit.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {password_file}",
        f"acl_file {acl_file}",
        "persistence true",
        f"persistence_location {persistence_dir}/",
        "autosave_interval 5",
    ]
    if run_as:
        # Started as root, Mosquitto drops to this user; it must own the persistence directory.
        lines.append(f"user {run_as}")
    lines.append(TUNING.rstrip())
    lines.append(f"listener {port}{f' {host}' if host else ''}")
    if certs is not None:
        lines += [f"cafile {certs.ca_cert}", f"certfile {certs.server_cert}",
                  f"keyfile {certs.server_key}", "tls_version tlsv1.2"]
        if client_certs:
            lines.append("require_certificate true")
    return "\n".join(lines) + "\n"


def read_credentials(path: Path) -> dict[str, str]:
    """``user password`` lines, as ``write_broker_config`` keeps them; empty if no file."""
    if not path.exists():
        return {}
    found: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, password = line.partition(" ")
        if not sep or not password:
            raise ConfigError(str(path), f"line {number}", "expected `user password`")
        found[name] = password
    return found


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _write_users(users: Sequence[BrokerUser], out: Path
                 ) -> tuple[Path, Path, Path, dict[str, str]]:
    """``credentials`` (each user's password, kept from an earlier run), ``passwd`` (their
    hashes) and ``acl`` under ``out``; and the passwords."""
    out.mkdir(parents=True, exist_ok=True)
    credentials_file = out / "credentials"
    kept = read_credentials(credentials_file)
    passwords = {u.name: kept.get(u.name) or secrets.token_urlsafe(32) for u in users}
    _write_private(credentials_file, "# user password (keep secret)\n" + "".join(
        f"{name} {password}\n" for name, password in passwords.items()))
    password_file = out / "passwd"
    _write_private(password_file, "".join(
        f"{name}:{hash_password(password)}\n" for name, password in passwords.items()))
    acl_file = out / "acl"
    _write_private(acl_file, render_acl(users))
    return credentials_file, password_file, acl_file, passwords


def current_user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def write_broker_config(stores: Sequence[StoreConfig], out: Path, *, port: int = 8883,
                        host: str | None = None, certs: StoreCerts | None = None,
                        client_certs: bool = False, persistence_dir: Path | None = None,
                        run_as: str | None = None) -> BrokerFiles:
    """Write ``mosquitto.conf``, ``passwd``, ``acl`` and ``credentials`` under ``out`` for the
    stores one broker serves (usually one). ``persistence_dir`` defaults to ``out/data``.

    With ``run_as`` (the user Mosquitto drops to when started as root), that user is given the
    files Mosquitto reads after dropping: the password file, the ACL, the server's key and the
    persistence directory. ``credentials`` stays with whoever ran this."""
    ids = [s.store.id for s in stores]
    if len(set(ids)) != len(ids):
        raise ConfigError("<command line>", "--config", f"a store is given twice: {ids}")
    users = [user for store in stores for user in store_users(store)]
    names = [u.name for u in users]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ConfigError("<command line>", "--config", f"two users would be named {duplicate!r}")
    credentials_file, password_file, acl_file, passwords = _write_users(users, out)
    persistence_dir = persistence_dir or out / "data"
    persistence_dir.mkdir(parents=True, exist_ok=True)
    if run_as and os.geteuid() == 0 and run_as != current_user():
        # Mosquitto reads these after it dropped to run_as: hand them over (still 0600).
        owner = pwd.getpwnam(run_as)
        readable = [password_file, acl_file, persistence_dir]
        if certs is not None:
            readable.append(certs.server_key)
        for path in readable:
            os.chown(path, owner.pw_uid, owner.pw_gid)
    conf = out / "mosquitto.conf"
    conf.write_text(render_conf(
        port=port, host=host, password_file=password_file.resolve(),
        acl_file=acl_file.resolve(), persistence_dir=persistence_dir.resolve(), certs=certs,
        client_certs=client_certs, run_as=run_as))
    return BrokerFiles(conf, password_file, acl_file, credentials_file, tuple(users), passwords)


def bridge_user(store_id: str) -> str:
    """The user a store's bridge signs in to the HQ broker as."""
    return f"bridge-{store_id}"


HQ_SERVICE_USER = "storeedge-hq"


def write_hq_broker_config(store_ids: Sequence[str], out: Path, *, port: int,
                           host: str | None = None, certs: StoreCerts | None = None,
                           run_as: str | None = None) -> BrokerFiles:
    """The HQ broker's ``mosquitto.conf``, ``passwd``, ``acl`` and ``credentials`` under ``out``:
    each store's bridge may write its own store's subtree only, the HQ service reads them all,
    nobody else gets in."""
    users = [BrokerUser(bridge_user(sid), "hq", sid, (("write", f"store/{sid}/#"),))
             for sid in store_ids]
    users.append(BrokerUser(HQ_SERVICE_USER, "hq", "*", (("read", "store/#"),)))
    credentials_file, password_file, acl_file, passwords = _write_users(users, out)
    conf = out / "mosquitto.conf"
    conf.write_text(render_conf(port=port, host=host, password_file=password_file.resolve(),
                                acl_file=acl_file.resolve(), persistence_dir=out.resolve(),
                                certs=certs, run_as=run_as))
    return BrokerFiles(conf, password_file, acl_file, credentials_file, tuple(users), passwords)
