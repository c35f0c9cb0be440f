"""Run a real, provisioned Tryton server for the demo and the tests.

Initialising a Tryton database (``trytond-admin -u ...``) and provisioning it takes seconds to
tens of seconds, so a provisioned SQLite file is kept as a template under a cache directory,
keyed by a hash of the trytond version, the module list, the catalog, the initial stock and the
admin password. Each new server copies the template and starts in about a second.

Measured on a 2-core machine: building the template takes 13-16 s (``trytond-admin`` about
10 s of it), a cached start 0.2 s idle and up to 1.8 s under load.

``start_tryton`` returns a :class:`TrytonServer`; ``stop()`` sends SIGTERM to its process group,
``restart()`` starts it again on the same port and database (for ERP outage tests).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DATABASE = "storeedge"
MODULES = ("company", "party", "product", "stock")
OPTIONAL_MODULES = ("product_measurements",)  # gives products a weight when installed
ADMIN_EMAIL = "admin@storeedge.invalid"

TRYTOND_CONF = """\
[database]
uri = sqlite://
path = {path}

[web]
listen = 127.0.0.1:{port}

[session]
# the agent keeps one session for days; it logs in again when this expires anyway
timeout = 86400
"""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/storeedge/tryton`` (``~/.cache/storeedge/tryton`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "storeedge" / "tryton"


def modules() -> list[str]:
    """The Tryton modules a store database gets: the required ones plus the optional installed."""
    found = {ep.name for ep in metadata.entry_points(group="trytond.modules")}
    return [*MODULES, *(m for m in OPTIONAL_MODULES if m in found)]


def _bin(name: str) -> str:
    sibling = Path(sys.executable).parent / name
    if sibling.exists():
        return str(sibling)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed (pip install storeedge[erp])")
    return found


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"trytond exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"trytond does not listen on 127.0.0.1:{port} after {timeout}s")


@dataclass
class TrytonServer:
    """A running ``trytond`` child process serving one provisioned SQLite database."""

    workdir: Path
    port: int
    database: str = DATABASE
    timings: dict[str, float] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def conf(self) -> Path:
        return self.workdir / "trytond.conf"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 30.0) -> None:
        """Start ``trytond`` in its own process group and wait until it listens."""
        if self.running:
            return
        started = time.monotonic()
        log_path = self.workdir / "trytond.log"
        with open(log_path, "ab") as out:
            self._proc = subprocess.Popen(
                # -d loads the database's modules before listening; loaded lazily, the first
                # login after a start can fail with KeyError 'res.user' on trytond 8.2
                [_bin("trytond"), "-c", str(self.conf), "-d", self.database],
                stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True,
            )
        try:
            _wait_for_port(self.port, self._proc, timeout)
        except Exception as exc:
            self.stop()
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"trytond did not start: {exc}\n{tail}") from exc
        self.timings["start_s"] = time.monotonic() - started
        log.info("trytond listening on port %d (pid %d)", self.port, self._proc.pid)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the server's process group; SIGKILL it after ``grace`` seconds."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.info("trytond on port %d stopped", self.port)

    def restart(self, timeout: float = 30.0) -> None:
        """Stop and start again on the same port and database."""
        self.stop()
        self.start(timeout)


def start_tryton(workdir: Path, port: int, catalog: list[dict[str, Any]],
                 initial_stock: dict[str, int], admin_password: str,
                 cache_dir: Path | None = None, timeout: float = 30.0) -> TrytonServer:
    """Start a Tryton on ``127.0.0.1:port`` with a database provisioned for ``catalog``.

    ``catalog`` items are dicts with ``sku``, ``name``, ``barcode`` (a valid EAN or None) and
    ``unit_grams``; ``initial_stock`` maps SKU to the units in warehouse ``WH``. The first call
    for a given catalog builds a template database in ``cache_dir`` (see ``timings["init_s"]``);
    later calls copy it.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    template, init_s = ensure_template(catalog, initial_stock, admin_password,
                                       cache_dir or default_cache_dir())
    shutil.copyfile(template, workdir / f"{DATABASE}.sqlite")
    server = TrytonServer(workdir=workdir, port=port)
    server.conf.write_text(TRYTOND_CONF.format(path=workdir, port=port))
    server.start(timeout)
    if init_s is not None:
        server.timings["init_s"] = init_s
    return server


def ensure_template(catalog: list[dict[str, Any]], initial_stock: dict[str, int],
                    admin_password: str, cache_dir: Path) -> tuple[Path, float | None]:
    """Return the cached template for these inputs, building it first if missing.

    Returns the template's path and how long building took (None when it was cached). The
    template is built in a temporary directory and renamed into place, so concurrent builders
    never see a half-written file.
    """
    mods = modules()
    key = hashlib.sha256(json.dumps({
        "trytond": metadata.version("trytond"),
        "modules": mods,
        "catalog": catalog,
        "initial_stock": initial_stock,
        "password": hashlib.sha256(admin_password.encode()).hexdigest(),
    }, sort_keys=True).encode()).hexdigest()[:16]
    template = cache_dir / f"{DATABASE}-{key}.sqlite"
    if template.exists():
        return template, None
    cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="build-") as tmp:
        build = Path(tmp)
        conf = build / "trytond.conf"
        conf.write_text(TRYTOND_CONF.format(path=build, port=0))
        (build / f"{DATABASE}.sqlite").touch()
        passfile = build / "admin.pass"
        passfile.write_text(admin_password)
        spec = build / "spec.json"
        spec.write_text(json.dumps({"catalog": catalog, "initial_stock": initial_stock}))
        env = {**os.environ, "TRYTONPASSFILE": str(passfile)}
        _run([_bin("trytond-admin"), "-c", str(conf), "-d", DATABASE, "-u", *mods,
              "--activate-dependencies", "--email", ADMIN_EMAIL], env, build)
        _run([sys.executable, "-m", "cloud_bridge.tryton.provision", str(conf), DATABASE,
              str(spec)], env, build)
        db = build / f"{DATABASE}.sqlite"
        # fold any write-ahead log into the file, so the copy alone is the whole database
        with closing(sqlite3.connect(db)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        os.replace(db, template)
    init_s = time.monotonic() - started
    log.info("built Tryton template %s (modules %s) in %.1f s", template, ",".join(mods), init_s)
    return template, init_s


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> None:
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed ({result.returncode}):\n"
                           f"{(result.stdout + result.stderr)[-3000:]}")
