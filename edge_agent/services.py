"""Start and stop the real services a store-in-a-box needs: Mosquitto (or an embedded amqtt
broker), and a time-series server speaking the InfluxDB v2 write API (VictoriaMetrics).

The demo and the test fixtures both use these, each on free loopback ports with its own config
and data directory, and stop what they started.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.broker_security import TUNING, BrokerFiles, current_user, write_broker_config
from edge_agent.certs import StoreCerts
from edge_agent.config import StoreConfig

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0,
                  proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"process {proc.args!r} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


@dataclass
class Service:
    """A child process we started; ``stop()`` sends SIGTERM, then SIGKILL after a grace period,
    and ``restart()`` starts it again with the same command, port and data directory."""

    name: str
    argv: list[str]
    port: int
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=self.workdir, env={**os.environ, **self.env},
                                         start_new_session=True)
        try:
            wait_for_port(self.port, timeout=timeout, proc=self.proc)
        except Exception as exc:
            self.proc.kill()
            self.proc.wait()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} did not start: {exc}\n{tail}") from exc

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        log.info("service stopped", extra={"service": self.name, "rc": self.proc.returncode})

    def restart(self, timeout: float = 30.0) -> None:
        self.stop()
        self.start(timeout)


def spawn(name: str, argv: list[str], workdir: Path, port: int,
          env: dict[str, str] | None = None, timeout: float = 30.0) -> Service:
    service = Service(name, argv, port, workdir, env or {})
    service.start(timeout)
    return service


MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {dir}/
autosave_interval 5
user {user}
"""


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None
    )


def start_mosquitto(workdir: Path, port: int | None = None, *,
                    stores: Sequence[StoreConfig] = (), certs: StoreCerts | None = None,
                    client_certs: bool = False, extra_conf: str = "") -> Service:
    """Mosquitto with the store broker's settings, its persistence in ``workdir`` (retained
    state survives a restart on the same ``workdir`` and ``port``).

    Without ``stores``, anonymous clients may do anything (the development broker). With them,
    the config ``storeedge broker-config`` writes: their users and ACLs only, TLS when ``certs``
    are given; ``extra["broker"]`` holds the ``BrokerFiles`` with every user's password.
    ``extra_conf`` goes at the end of the config (a bridge to HQ, say).
    """
    binary = mosquitto_path()
    if binary is None:
        raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    # Started as root, Mosquitto drops to its own user, which cannot write a persistence file
    # here: stay the user who owns workdir.
    user = current_user()
    files: BrokerFiles | None = None
    if stores:
        files = write_broker_config(stores, workdir, port=port, host="127.0.0.1", certs=certs,
                                    client_certs=client_certs, persistence_dir=workdir,
                                    run_as=user)
        conf = files.conf
        if extra_conf:
            conf.write_text(conf.read_text() + extra_conf)
    else:
        conf = workdir / "mosquitto.conf"
        conf.write_text(MOSQUITTO_CONF.format(port=port, dir=workdir, user=user) + TUNING
                        + extra_conf)
    service = spawn("mosquitto", [binary, "-c", str(conf)], workdir, port)
    if files is not None:
        service.extra["broker"] = files
    return service


AMQTT_CONF = """\
listeners:
  default:
    type: tcp
    bind: 127.0.0.1:{port}
plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
    allow_anonymous: true
"""


def start_amqtt(workdir: Path, port: int | None = None) -> Service:
    """The embedded broker, for machines without Mosquitto (slower: see DESIGN.md)."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "amqtt.yaml"
    conf.write_text(AMQTT_CONF.format(port=port))
    return spawn("amqtt", [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(conf)],
                 workdir, port)


def start_broker(workdir: Path, port: int | None = None) -> Service:
    """Mosquitto when installed, else the embedded amqtt broker."""
    if mosquitto_path() is not None:
        return start_mosquitto(workdir, port)
    log.warning("mosquitto not installed; using the embedded amqtt broker")
    return start_amqtt(workdir, port)


def victoria_metrics_path() -> str | None:
    return shutil.which("victoria-metrics") or (
        "/usr/bin/victoria-metrics" if os.path.exists("/usr/bin/victoria-metrics") else None
    )


def start_victoria_metrics(workdir: Path, port: int | None = None) -> Service:
    """VictoriaMetrics accepts the InfluxDB v2 write API on /api/v2/write.

    Deduplication at 1 ms makes a re-sent batch (a crash between write and acknowledgement)
    land once in effect, as InfluxDB does for identical series and timestamps.
    """
    binary = victoria_metrics_path()
    if binary is None:
        raise FileNotFoundError(
            "victoria-metrics is not installed (apt-get install victoria-metrics)")
    port = port or free_port()
    data = workdir / "data"
    return spawn("victoria-metrics", [
        binary, f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}",
        "-dedup.minScrapeInterval=1ms", "-retentionPeriod=100y", "-loggerLevel=WARN",
        "-search.latencyOffset=0s",
    ], workdir, port)
