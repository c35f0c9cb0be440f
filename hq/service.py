"""Run the HQ service: ``storeedge hq --config hq.yaml``."""

from __future__ import annotations

import os

import uvicorn

from hq.config import load_config
from hq.web import create_app
from storeedge.httpsec import tls_server_options


def serve(path: str | os.PathLike[str]) -> int:
    config = load_config(path)
    uvicorn.run(create_app(config), host=config.http.host, port=config.http.port,
                log_config=None, access_log=False,
                **tls_server_options(config.http.tls_cert_file, config.http.tls_key_file))
    return 0
