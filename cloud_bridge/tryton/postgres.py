"""A private PostgreSQL cluster for the chain's Tryton in tests and benchmarks.

``start_postgres`` runs Debian's ``initdb`` and ``pg_ctl`` (``/usr/lib/postgresql/*/bin``, the
newest version) on a fresh data directory, listening on ``127.0.0.1:port`` only, with trust
authentication for local connections (nothing but this machine reaches it, and it lives as long
as a test session). PostgreSQL refuses to run as root: as root, the cluster is owned by and run
as the ``postgres`` user (``runuser``), in a directory of its own outside the caller's private
temporary directories. ``stop()`` stops it and removes the directory.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SUPERUSER = "postgres"


def postgres_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb``."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    if not found:
        raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
    return found[-1].parent


@dataclass
class PostgresCluster:
    """A running cluster; ``uri`` is the libpq URI of its superuser, without a database."""

    root: Path
    port: int
    _run_as: list[str]

    @property
    def uri(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/"

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def stop(self) -> None:
        """Stop the cluster (fast shutdown) and remove its directory."""
        if self.datadir.exists():
            subprocess.run([*self._run_as, str(postgres_bindir() / "pg_ctl"), "-D",
                            str(self.datadir), "-m", "fast", "-w", "stop"],
                           capture_output=True, check=False, timeout=60)
            log.info("PostgreSQL on port %d stopped", self.port)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(port: int, timeout: float = 60.0) -> PostgresCluster:
    """Initialise and start a cluster on ``127.0.0.1:port``; the caller stops it."""
    bindir = postgres_bindir()
    root = Path(tempfile.mkdtemp(prefix="storeedge-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam(SUPERUSER)
        os.chown(root, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", SUPERUSER, "--"]
    cluster = PostgresCluster(root, port, run_as)
    try:
        _run([*run_as, str(bindir / "initdb"), "-D", str(cluster.datadir), "-U", SUPERUSER,
              "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"], timeout)
        options = (f"-p {port} -c listen_addresses=127.0.0.1 -k {root}"
                   " -c max_connections=200")
        _run([*run_as, str(bindir / "pg_ctl"), "-D", str(cluster.datadir), "-o", options,
              "-l", str(root / "postgres.log"), "-w", "-t", str(int(timeout)), "start"], timeout)
    except Exception:
        cluster.stop()
        raise
    log.info("PostgreSQL %s listening on 127.0.0.1:%d", bindir.parent.name, port)
    return cluster


def _run(argv: list[str], timeout: float) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    if result.returncode != 0:
        program = next(Path(arg).name for arg in argv if arg.startswith("/"))
        raise RuntimeError(f"{program} failed ({result.returncode}):\n"
                           f"{(result.stdout + result.stderr)[-2000:]}")
