"""Run a real, provisioned Tryton server for the demo and the tests, on SQLite or PostgreSQL.

Initialising a Tryton database (``trytond-admin -u ...``) and provisioning it takes seconds to
tens of seconds, so a provisioned SQLite file is kept as a template under a cache directory,
keyed by a hash of the trytond version, the module list, our module's files, the catalog and the
initial stock.
Each new server copies the template, starts in about a second and then has its admin password
set to the run's own (:data:`TEMPLATE_PASSWORD` is only ever the template's, so a run's random
password does not force a rebuild).

Measured on a 2-core machine: building the template takes 13-18 s (``trytond-admin`` about
10 s of it), a cached start 0.2 s idle and up to 1.8 s under load.

``start_tryton`` returns a :class:`TrytonServer` on SQLite; ``start_tryton_postgres`` one on a
database it creates in a PostgreSQL cluster, with a warehouse per store (the chain's shape).
``stop()`` sends SIGTERM to its process group, ``restart()`` starts it again on the same port
and database (for ERP outage tests).
"""

from __future__ import annotations

import base64
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
# storeedge: our own module, cloud_bridge/tryton/module
MODULES = ("company", "party", "product", "stock", "storeedge")
OPTIONAL_MODULES = ("product_measurements",)  # gives products a weight when installed
ADMIN_EMAIL = "admin@storeedge.invalid"
TEMPLATE_PASSWORD = "storeedge-template"  # replaced by the run's password before anyone logs in

TRYTOND_CONF = """\
[database]
uri = {uri}
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
    def pid(self) -> int | None:
        """The server process's id while it runs (for CPU accounting in benchmarks)."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


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
                 cache_dir: Path | None = None, timeout: float = 30.0,
                 warehouses: dict[str, dict[str, int]] | None = None) -> TrytonServer:
    """Start a Tryton on ``127.0.0.1:port`` with a database provisioned for ``catalog``.

    ``catalog`` items are dicts with ``sku``, ``name``, ``barcode`` (a valid EAN or None) and
    ``unit_grams``; ``initial_stock`` maps SKU to the units in warehouse ``WH``; ``warehouses``
    adds more (code -> initial stock), such as the chain's distribution centre. The first call
    for given inputs builds a template database in ``cache_dir`` (see ``timings["init_s"]``);
    later calls copy it.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    template, init_s = ensure_template(catalog, initial_stock, cache_dir or default_cache_dir(),
                                       warehouses or {})
    shutil.copyfile(template, workdir / f"{DATABASE}.sqlite")
    server = TrytonServer(workdir=workdir, port=port)
    server.conf.write_text(TRYTOND_CONF.format(uri="sqlite://", path=workdir, port=port))
    server.start(timeout)
    try:
        set_admin_password(server, TEMPLATE_PASSWORD, admin_password)
    except Exception:
        server.stop()
        raise
    if init_s is not None:
        server.timings["init_s"] = init_s
    return server


def start_tryton_postgres(workdir: Path, port: int, pg_uri: str, catalog: list[dict[str, Any]],
                          warehouses: dict[str, dict[str, int]], admin_password: str,
                          database: str = DATABASE, timeout: float = 60.0) -> TrytonServer:
    """Create ``database`` in the PostgreSQL cluster at ``pg_uri``, provision it and serve it.

    ``pg_uri`` is a libpq URI without a database (``postgresql://user@127.0.0.1:5432/``).
    ``warehouses`` maps each store's warehouse code to its initial stock (SKU -> units); ``WH``
    is Tryton's own default warehouse, other codes are created. No template is cached: the
    cluster is the caller's, usually as short-lived as a test session.
    """
    import psycopg  # only the chain's setup needs the PostgreSQL driver (Tryton's own too)

    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with psycopg.connect(f"{pg_uri.rstrip('/')}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}" ENCODING \'UTF8\' TEMPLATE template0')
    server = TrytonServer(workdir=workdir, port=port, database=database)
    server.conf.write_text(TRYTOND_CONF.format(uri=pg_uri, path=workdir, port=port))
    _initialise(server.conf, database, {"catalog": catalog, "initial_stock": {},
                                        "warehouses": warehouses}, admin_password, workdir)
    server.timings["init_s"] = time.monotonic() - started
    server.start(timeout)
    return server


def set_admin_password(server: TrytonServer, old: str, new: str) -> None:
    """Change the admin user's password over JSON-RPC (login with ``old``, write ``new``)."""
    if old == new:
        return
    import httpx

    endpoint = f"{server.url}{server.database}/rpc/"
    with httpx.Client(timeout=30.0) as client:
        def call(method: str, params: list[Any], auth: str | None = None) -> Any:
            headers = {"Authorization": auth} if auth else {}
            reply = client.post(endpoint, json={"id": 1, "method": method, "params": params},
                                headers=headers)
            reply.raise_for_status()
            body = reply.json()
            if "error" in body:
                raise RuntimeError(f"Tryton {method}: {body['error']}")
            return body["result"]

        user_id, session = call("common.db.login", ["admin", {"password": old}, "en"])[:2]
        token = base64.b64encode(f"admin:{user_id}:{session}".encode()).decode()
        auth = f"Session {token}"
        # Tryton ends the user's sessions on a password change: no logout needed
        call("model.res.user.write", [[user_id], {"password": new}, {}], auth)


def ensure_template(catalog: list[dict[str, Any]], initial_stock: dict[str, int],
                    cache_dir: Path, warehouses: dict[str, dict[str, int]] | None = None,
                    ) -> tuple[Path, float | None]:
    """Return the cached template for these inputs, building it first if missing.

    Returns the template's path and how long building took (None when it was cached). The
    template is built in a temporary directory and renamed into place, so concurrent builders
    never see a half-written file.
    """
    mods = modules()
    key = hashlib.sha256(json.dumps({
        "trytond": metadata.version("trytond"),
        "modules": mods,
        "storeedge_module": _module_digest(),
        "catalog": catalog,
        "initial_stock": initial_stock,
        **({"warehouses": warehouses} if warehouses else {}),
    }, sort_keys=True).encode()).hexdigest()[:16]
    template = cache_dir / f"{DATABASE}-{key}.sqlite"
    if template.exists():
        return template, None
    cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="build-") as tmp:
        build = Path(tmp)
        conf = build / "trytond.conf"
        conf.write_text(TRYTOND_CONF.format(uri="sqlite://", path=build, port=0))
        (build / f"{DATABASE}.sqlite").touch()
        _initialise(conf, DATABASE, {"catalog": catalog, "initial_stock": initial_stock,
                                     "warehouses": warehouses or {}},
                    TEMPLATE_PASSWORD, build)
        db = build / f"{DATABASE}.sqlite"
        # fold any write-ahead log into the file, so the copy alone is the whole database
        with closing(sqlite3.connect(db)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        os.replace(db, template)
    init_s = time.monotonic() - started
    log.info("built Tryton template %s (modules %s) in %.1f s", template, ",".join(mods), init_s)
    return template, init_s


def _module_digest() -> str:
    """A hash of our Tryton module's files: a changed field must not reuse an old template."""
    digest = hashlib.sha256()
    for path in sorted((Path(__file__).parent / "module").iterdir()):
        if path.suffix in (".py", ".xml", ".cfg"):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def _initialise(conf: Path, database: str, spec: dict[str, Any], admin_password: str,
                workdir: Path) -> None:
    """``trytond-admin`` (activate the modules) then our provisioning, in subprocesses."""
    passfile = workdir / "admin.pass"
    passfile.write_text(admin_password)
    spec_file = workdir / "spec.json"
    spec_file.write_text(json.dumps(spec))
    env = {**os.environ, "TRYTONPASSFILE": str(passfile)}
    try:
        _run([_bin("trytond-admin"), "-c", str(conf), "-d", database, "-u", *modules(),
              "--activate-dependencies", "--email", ADMIN_EMAIL], env, workdir)
        _run([sys.executable, "-m", "cloud_bridge.tryton.provision", str(conf), database,
              str(spec_file)], env, workdir)
    finally:
        passfile.unlink(missing_ok=True)


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> None:
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed ({result.returncode}):\n"
                           f"{(result.stdout + result.stderr)[-3000:]}")
