"""The ``storeedge`` command: ``agent``, ``check``, ``sim``, ``demo`` and ``hq``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from pathlib import Path

from storeedge.errors import ConfigError

log = logging.getLogger("storeedge")

FAULT_SPEC = "DEVICE:KEY=VALUE[,KEY=VALUE...]"
FAULT_HELP = ("inject a fault into a simulated device, e.g. shelf-a1:unplug_at=20,replug_at=35 or "
              "shelf-b1:duplicate_rate=0.1 (keys: noise_grams, noise, drift_per_s, stuck, "
              "corrupt_rate, unplug_at, replug_at, duplicate_rate, reorder_rate, clock_skew_s); "
              "repeatable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="storeedge", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", choices=("json", "text"), default="json")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("agent", help="run one store's agent")
    p.add_argument("--config", required=True, type=Path)

    p = sub.add_parser("check", help="validate a store config file and exit")
    p.add_argument("--config", required=True, type=Path)

    p = sub.add_parser("sim", help="run a scenario's simulated devices and POS")
    p.add_argument("--scenario", default="basic", help="built-in name or a scenario file")
    p.add_argument("--broker-host", default="127.0.0.1")
    p.add_argument("--broker-port", type=int, default=1883)
    p.add_argument("--agent-url", default="http://127.0.0.1:8080")
    p.add_argument("--dev-dir", type=Path, required=True,
                   help="where the wired shelves' serial ports appear (one link per shelf)")
    p.add_argument("--truth-out", type=Path, help="write the scenario's sales truth here at exit")
    p.add_argument("--seconds", type=float, default=0, help="0: until SIGTERM")
    p.add_argument("--fault", action="append", default=[], metavar=FAULT_SPEC, help=FAULT_HELP)
    p.add_argument("--device-port", action="append", default=[], metavar="DEVICE=PORT",
                   help="fixed TCP port of a simulated device that serves one (cameras)")

    p = sub.add_parser("demo", help="run a whole store-in-a-box")
    p.add_argument("--scenario", default="basic")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--workdir", type=Path, help="default: a fresh directory under var/demo")
    p.add_argument("--fault", action="append", default=[], metavar=FAULT_SPEC, help=FAULT_HELP)
    p.add_argument("--stores", type=int, default=1,
                   help="more than 1: a chain of stores bridged to HQ, with the HQ service")

    p = sub.add_parser("hq", help="run the HQ service, or make a store's bridge to it")
    p.add_argument("--config", type=Path, help="the HQ config (hq.yaml)")
    hq_sub = p.add_subparsers(dest="hq_command")
    b = hq_sub.add_parser("bridge-config", help="print the store broker's bridge to HQ")
    b.add_argument("--store", required=True, type=Path, help="the store's config (store.yaml)")
    b.add_argument("--hq-host", required=True)
    b.add_argument("--hq-port", type=int, default=None, help="default: 8883 with TLS, else 1883")
    b.add_argument("--hq-username", help="default: bridge-{store id}")
    b.add_argument("--hq-password-env", help="environment variable holding the bridge's password")
    b.add_argument("--hq-cafile", help="the HQ broker's CA: bridge over TLS")

    args = parser.parse_args(argv)
    from edge_agent import logs

    logs.configure(args.log_level, json_lines=args.log_format == "json")
    try:
        if args.command == "check":
            from edge_agent.config import load_config

            config = load_config(args.config)
            print(f"{args.config}: ok (store {config.store.id}, {len(config.devices)} devices, "
                  f"{len(config.lanes)} lanes)")
            return 0
        if args.command == "agent":
            from edge_agent.agent import StoreAgent
            from edge_agent.config import load_config

            agent = StoreAgent(load_config(args.config))
            agent.restore()
            # What setup allocated lives as long as the process: keep the collector off it,
            # and collect young objects less often (measured: 67 -> 61 us of CPU per reading).
            gc.collect()
            gc.freeze()
            gc.set_threshold(100_000, 50, 1000)
            asyncio.run(agent.run())
            return 0
        if args.command == "sim":
            from firmware_sim.store import run_store

            asyncio.run(run_store(
                args.scenario, broker=(args.broker_host, args.broker_port),
                agent_url=args.agent_url, dev_dir=args.dev_dir, truth_out=args.truth_out,
                seconds=args.seconds or None, faults=args.fault,
                device_ports={d: int(p) for d, _, p in
                              (spec.partition("=") for spec in args.device_port)}))
            return 0
        if args.command == "demo":
            if args.stores > 1:
                from edge_agent.chain_demo import run_chain_demo

                return run_chain_demo(args.stores, args.seconds, args.workdir, args.scenario)
            from edge_agent.demo import run_demo

            return run_demo(args.scenario, args.seconds, args.workdir, args.fault)
        if args.command == "hq":
            from hq.cli import run_hq

            return run_hq(args)
    except ConfigError as exc:
        print(f"storeedge: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
