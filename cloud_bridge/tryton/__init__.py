"""The Tryton ERP: the connector the agent uses, and a real server for the demo and the tests."""

from cloud_bridge.tryton.connector import TrytonConnector
from cloud_bridge.tryton.server import TrytonServer, start_tryton

__all__ = ["TrytonConnector", "TrytonServer", "start_tryton"]
