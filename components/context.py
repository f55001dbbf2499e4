"""What every service component of a stack is built from, in one value."""

from __future__ import annotations

from typing import NamedTuple

from components.credentials import Credentials
from components.network import Networks
from configs.render import ServerVersions
from model.settings import Settings
from model.topology import Topology


class StackContext(NamedTuple):
    """Unpacks in this order: `stack, settings, topo, versions, networks, credentials = ctx`."""

    stack: str
    settings: Settings
    topo: Topology
    versions: ServerVersions
    networks: Networks
    credentials: Credentials
