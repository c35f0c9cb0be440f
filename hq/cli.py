"""``storeedge hq``: run the HQ service (``--config hq.yaml``) or print a store broker's bridge
to HQ (``bridge-config --store store.yaml``)."""

from __future__ import annotations

import argparse
import os
import sys

from hq.bridge import HqBroker, bridge_config
from storeedge.errors import ConfigError
from storeedge.yamlfile import locate, read_yaml


def store_id_of(path: os.PathLike[str] | str) -> str:
    """The ``store.id`` of a store config file (the only key a bridge needs from it)."""
    data, raw = read_yaml(path)
    store = data.get("store") if isinstance(data, dict) else None
    sid = store.get("id") if isinstance(store, dict) else None
    if not isinstance(sid, str) or not sid:
        raise ConfigError(str(path), "store.id", "a store id is required for the bridge",
                          locate(raw, ["store", "id"])[1])
    return sid


def run_hq(args: argparse.Namespace) -> int:
    if args.hq_command == "bridge-config":
        sid = store_id_of(args.store)
        password = None
        if args.hq_password_env:
            password = os.environ.get(args.hq_password_env)
            if password is None:
                print(f"storeedge: {args.hq_password_env} is not set", file=sys.stderr)
                return 2
        port = args.hq_port or (8883 if args.hq_cafile else 1883)
        sys.stdout.write(bridge_config(sid, HqBroker(
            args.hq_host, port, args.hq_username or f"bridge-{sid}", password, args.hq_cafile)))
        return 0
    if args.config is None:
        print("storeedge hq: --config hq.yaml is required", file=sys.stderr)
        return 2
    from hq.service import serve

    return serve(args.config)
