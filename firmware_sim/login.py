"""How a simulated device signs in to the store's broker: its MQTT user and password, and the CA
that signed the broker's certificate (TLS when given). A store's broker refuses anonymous
clients (see ``storeedge broker-config``); a development broker takes ``NO_LOGIN``."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt


@dataclass(frozen=True)
class BrokerLogin:
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None

    def tls_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None

    def apply(self, client: mqtt.Client) -> None:
        """Set a paho client's credentials and TLS before it connects."""
        if self.username:
            client.username_pw_set(self.username, self.password)
        context = self.tls_context()
        if context is not None:
            client.tls_set_context(context)

    def aiomqtt_args(self) -> dict[str, Any]:
        """The keyword arguments ``aiomqtt.Client`` takes for the same."""
        return {"username": self.username, "password": self.password,
                "tls_context": self.tls_context()}


NO_LOGIN = BrokerLogin()
