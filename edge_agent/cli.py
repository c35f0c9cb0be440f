"""The ``storeedge`` command: ``agent``, ``check``, ``sim``, ``demo``, ``hq``, ``backup``,
``restore``, ``outbox``, ``broker-config`` and ``certs``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import gc
import logging
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from storeedge.errors import ConfigError

if TYPE_CHECKING:
    from firmware_sim.login import BrokerLogin

log = logging.getLogger("storeedge")

CONFIG_HELP = "the store's config file (see store.example.yaml)"
FAULT_SPEC = "DEVICE:KEY=VALUE[,KEY=VALUE...]"
FAULT_HELP = ("inject a fault into a simulated device, e.g. shelf-a1:unplug_at=20,replug_at=35 or "
              "shelf-b1:duplicate_rate=0.1 (keys: noise_grams, noise, drift_per_s, stuck, "
              "corrupt_rate, unplug_at, replug_at, duplicate_rate, reorder_rate, clock_skew_s); "
              "repeatable")


def build_parser() -> argparse.ArgumentParser:
    """Every command and option, each with its help."""
    parser = argparse.ArgumentParser(prog="storeedge", description=__doc__)
    parser.add_argument("--version", action="version",
                        version=f"storeedge {metadata.version('storeedge')}")
    parser.add_argument("--log-level", default="INFO",
                        help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    parser.add_argument("--log-format", choices=("json", "text"), default="json",
                        help="json: one JSON object per line, for log collectors (default); "
                             "text: for people at a terminal")
    sub = parser.add_subparsers(dest="command", required=True, help="what to run")

    p = sub.add_parser("agent", help="run one store's agent")
    p.add_argument("--config", required=True, type=Path, help=CONFIG_HELP)

    p = sub.add_parser("check", help="validate a store config file, print every problem, exit")
    p.add_argument("--config", required=True, type=Path, help=CONFIG_HELP)

    p = sub.add_parser("sim", help="run a scenario's simulated devices and POS")
    p.add_argument("--scenario", default="basic", help="built-in name or a scenario file")
    p.add_argument("--broker-host", default="127.0.0.1", help="the store broker's address")
    p.add_argument("--broker-port", type=int, default=1883, help="the store broker's port")
    p.add_argument("--agent-url", default="http://127.0.0.1:8080",
                   help="where the simulated POS posts its transactions")
    p.add_argument("--dev-dir", type=Path, required=True,
                   help="where the wired shelves' serial ports appear (one link per shelf)")
    p.add_argument("--broker-ca", type=Path, help="the CA of the broker's certificate: TLS")
    p.add_argument("--broker-credentials", type=Path, metavar="FILE",
                   help="the `credentials` file of `storeedge broker-config`: each MQTT device "
                        "signs in as its own user")
    p.add_argument("--truth-out", type=Path, help="write the scenario's sales truth here at exit")
    p.add_argument("--seconds", type=float, default=0, help="0: until SIGTERM")
    p.add_argument("--fault", action="append", default=[], metavar=FAULT_SPEC, help=FAULT_HELP)
    p.add_argument("--device-port", action="append", default=[], metavar="DEVICE=PORT",
                   help="fixed TCP port of a simulated device that serves one (cameras)")

    p = sub.add_parser("demo", help="run a whole store-in-a-box")
    p.add_argument("--scenario",
                   help="built-in name (basic, the default; full) or a scenario file")
    p.add_argument("--seconds", type=float, default=60,
                   help="how long shoppers trade before the store drains and reports")
    p.add_argument("--workdir", type=Path, help="default: a fresh directory under var/demo")
    p.add_argument("--fault", action="append", default=[], metavar=FAULT_SPEC, help=FAULT_HELP)
    p.add_argument("--agent-env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment for the agent's process only (a profiler, a "
                        "fault-injection library); repeatable")
    p.add_argument("--stores", type=int, default=1,
                   help="more than 1: a chain of stores (playing chain-01..03 in turn) "
                        "bridged to HQ, with Tryton on PostgreSQL and the HQ service")

    p = sub.add_parser("hq", help="run the HQ service, or make a store's bridge to it")
    p.add_argument("--config", type=Path, help="the HQ config (hq.yaml)")
    hq_sub = p.add_subparsers(dest="hq_command", help="without one: run the HQ service")
    b = hq_sub.add_parser("bridge-config", help="print the store broker's bridge to HQ")
    b.add_argument("--store", required=True, type=Path, help="the store's config (store.yaml)")
    b.add_argument("--hq-host", required=True, help="the HQ broker's name or address")
    b.add_argument("--hq-port", type=int, default=None, help="default: 8883 with TLS, else 1883")
    b.add_argument("--hq-username", help="default: bridge-{store id}")
    b.add_argument("--hq-password-env", help="environment variable holding the bridge's password")
    b.add_argument("--hq-cafile", help="the HQ broker's CA: bridge over TLS")

    p = sub.add_parser("backup", help="copy a store agent's journal and buffers while it runs")
    p.add_argument("--config", required=True, type=Path, help=CONFIG_HELP)
    p.add_argument("--to", required=True, type=Path, help="directory the backup is made in")
    p.add_argument("--keep", type=int, default=0,
                   help="then delete all but the newest KEEP backups there (0: keep all)")

    p = sub.add_parser("restore", help="put a backup where a store config's journal goes")
    p.add_argument("--config", required=True, type=Path, help=CONFIG_HELP)
    p.add_argument("--from", dest="source", required=True, type=Path,
                   help="a backup directory (storeedge-backup-...)")
    p.add_argument("--force", action="store_true",
                   help="move an existing journal aside (never deleted) instead of refusing")

    p = sub.add_parser("broker-config", help="write a store broker's Mosquitto config, password "
                       "file and ACL (see edge_agent/broker_security.py)")
    p.add_argument("--config", required=True, type=Path, action="append",
                   help="a store's config; repeat for a broker that serves several stores")
    p.add_argument("--out", required=True, type=Path,
                   help="directory for mosquitto.conf, the password file, the ACL and the "
                        "credentials")
    p.add_argument("--certs", type=Path, help="a directory `storeedge certs` wrote: TLS listener")
    p.add_argument("--client-certs", action="store_true",
                   help="require a client certificate from every client (besides its password)")
    p.add_argument("--port", type=int, default=8883, help="the TLS listener's port (8883)")
    p.add_argument("--host", help="the address to listen on (default: every address)")
    p.add_argument("--run-as", help="the user Mosquitto drops to when started as root")

    p = sub.add_parser("certs", help="make a store's CA (or use the chain's), server and client "
                       "certificates")
    p.add_argument("--out", required=True, type=Path,
                   help="directory for the CA, server and client certificates and keys")
    p.add_argument("--store", required=True, help="the store id")
    p.add_argument("--host", action="append", default=[],
                   help="a name or address clients reach the broker and web app by; repeatable")
    p.add_argument("--client", action="append", default=[], metavar="USER",
                   help="issue a client certificate for this MQTT user; repeatable")
    p.add_argument("--clients-of", type=Path, metavar="STORE_YAML",
                   help="issue a client certificate for every broker user of this store")
    p.add_argument("--ca-cert", type=Path, help="the chain's CA certificate (PEM)")
    p.add_argument("--ca-key", type=Path, help="the chain's CA key (PEM)")

    p = sub.add_parser("outbox", help="list, show, retry or drop the ERP outbox's commands")
    p.add_argument("--config", required=True, type=Path, help=CONFIG_HELP)
    p.add_argument("action", choices=("list", "show", "retry", "drop"),
                   help="list the commands, show one, send one from the dead letter again, or "
                        "drop one for good")
    p.add_argument("key", nargs="?", help="the command's key (show, retry, drop)")
    p.add_argument("--state", choices=("pending", "delivered", "rejected"),
                   help="list only: commands in this state")
    p.add_argument("--limit", type=int, default=100, help="list only: at most this many")

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo" and args.stores > 1 and (
            args.scenario is not None or args.fault or args.agent_env):
        parser.error("demo --stores: the stores play the chain scenarios (chain-01..03); "
                     "--scenario, --fault and --agent-env are for one store")
    from edge_agent import logs

    logs.configure(args.log_level, json_lines=args.log_format == "json")
    # A crash in native code (a driver library, SQLite) leaves every thread's stack in the log.
    with contextlib.suppress(ValueError, AttributeError):  # stderr is no file (run embedded)
        faulthandler.enable()
    try:
        if args.command == "check":
            from edge_agent.config import load_config

            config = load_config(args.config, secrets=True)
            print(f"{args.config}: ok (store {config.store.id}, {len(config.devices)} devices, "
                  f"{len(config.lanes)} lanes)")
            return 0
        if args.command == "broker-config":
            return _broker_config(args)
        if args.command == "certs":
            return _certs(args)
        if args.command == "agent":
            from edge_agent.agent import StoreAgent
            from edge_agent.config import load_config

            agent = StoreAgent(load_config(args.config, secrets=True))
            agent.restore()
            # What setup allocated lives as long as the process: keep the collector off it.
            # Turns make no cyclic garbage, so a young collection only costs a pause on the
            # loop, as long as the young generation is big. Over 330,000 readings of
            # bench/ingest.py's workload: at 100,000 objects 6-10 ms a pause (the reading-to-
            # alert p99; 38 ms seen when the middle generation went too), at 5,000 under 1 ms
            # and the middle generation's about 2 ms, for the same CPU per reading.
            gc.collect()
            gc.freeze()
            gc.set_threshold(5_000, 20, 100)
            asyncio.run(agent.run())
            return 0
        if args.command == "sim":
            from firmware_sim.scenario import load_scenario
            from firmware_sim.store import run_store

            scenario = load_scenario(args.scenario)
            asyncio.run(run_store(
                scenario, logins=_sim_logins(scenario.store_id, args),
                broker=(args.broker_host, args.broker_port),
                agent_url=args.agent_url, dev_dir=args.dev_dir, truth_out=args.truth_out,
                seconds=args.seconds or None, faults=args.fault,
                device_ports={d: int(p) for d, _, p in
                              (spec.partition("=") for spec in args.device_port)}))
            return 0
        if args.command in ("backup", "restore"):
            from edge_agent import backup
            from edge_agent.config import load_config

            config = load_config(args.config)
            try:
                if args.command == "backup":
                    made = backup.backup(config.journal.path, args.to, store_id=config.store.id)
                    if args.keep:
                        backup.prune(args.to, args.keep, config.store.id)
                    print(made)
                else:
                    for path in backup.restore(args.source, config.journal.path,
                                               force=args.force):
                        print(path)
            except backup.BackupError as exc:
                print(f"storeedge: {exc}", file=sys.stderr)
                return 1
            return 0
        if args.command == "outbox":
            from cloud_bridge.outbox import admin_command
            from edge_agent.config import load_config

            return admin_command(load_config(args.config).journal.path, args.action, args.key,
                                 args.state, args.limit)
        if args.command == "demo":
            if args.stores > 1:
                from edge_agent.chain_demo import run_chain_demo

                return run_chain_demo(args.stores, args.seconds, args.workdir)
            from edge_agent.demo import run_demo

            return run_demo(args.scenario or "basic", args.seconds, args.workdir, args.fault,
                            dict(spec.partition("=")[::2] for spec in args.agent_env))
        if args.command == "hq":
            from hq.cli import run_hq

            return run_hq(args)
    except ConfigError as exc:
        problems = exc.problems
        head = "a problem" if len(problems) == 1 else f"{len(problems)} problems"
        print(f"storeedge: config error, {head}:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1


def _sim_logins(store_id: str, args: argparse.Namespace) -> dict[str, BrokerLogin]:
    """Device id -> its broker login, from broker-config's credentials file."""
    from edge_agent.broker_security import read_credentials
    from firmware_sim.login import BrokerLogin

    ca = str(args.broker_ca) if args.broker_ca else None
    if args.broker_credentials is None:
        if ca is not None:
            raise ConfigError("<command line>", "--broker-ca",
                              "a TLS broker of ours needs --broker-credentials too")
        return {}
    prefix = f"{store_id}-"
    return {user.removeprefix(prefix): BrokerLogin(user, password, ca)
            for user, password in read_credentials(args.broker_credentials).items()
            if user.startswith(prefix)}


def _broker_config(args: argparse.Namespace) -> int:
    from edge_agent.broker_security import write_broker_config
    from edge_agent.certs import StoreCerts
    from edge_agent.config import load_config

    certs = None
    if args.certs is not None:
        where = args.certs.resolve()
        certs = StoreCerts(where / "ca.crt", where / "server.crt", where / "server.key")
        for path in (certs.ca_cert, certs.server_cert, certs.server_key):
            if not path.is_file():
                raise ConfigError(str(path), "--certs", "missing (run `storeedge certs` first)")
    files = write_broker_config(
        [load_config(path) for path in args.config], args.out, port=args.port, host=args.host,
        certs=certs, client_certs=args.client_certs, run_as=args.run_as)
    print(f"{files.conf}: {len(files.users)} users; passwords in {files.credentials_file}")
    return 0


def _certs(args: argparse.Namespace) -> int:
    from edge_agent.broker_security import store_users
    from edge_agent.certs import write_store_certs
    from edge_agent.config import load_config

    clients = list(args.client)
    if args.clients_of is not None:
        clients += [user.name for user in store_users(load_config(args.clients_of))]
    made = write_store_certs(args.out, args.store, hosts=args.host, clients=clients,
                             ca_cert_file=args.ca_cert, ca_key_file=args.ca_key)
    print(f"{made.ca_cert}, {made.server_cert}, {len(made.clients)} client certificates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
