"""What every service component of a stack is built from, in one value."""

from __future__ import annotations

from dataclasses import dataclass

from components.credentials import Credentials
from components.network import Networks
from components.settings import Settings
from configs.render import ServerVersions
from configs.topology import Topology


@dataclass(frozen=True)
class StackContext:
    stack: str
    settings: Settings
    topo: Topology
    versions: ServerVersions
    networks: Networks
    credentials: Credentials
