"""The stack's Docker networks and who may join which.

- edge (public): nginx, and certbot for ACME.
- app (internal): nginx and the app replicas; nginx reaches the app only here.
- backend (internal): the app, PgBouncer and Redis.
- data (internal): PgBouncer, Postgres (and the backup jobs).
- monitoring (not internal, so Prometheus, Alertmanager and Grafana can publish on 127.0.0.1 and
  Alertmanager can reach its receivers): Prometheus and the exporters, each exporter also joining the
  one network of the service it reads.

- control (internal, only with scaling): the scaler and the Docker API proxy, nothing else.

nginx is on edge and app only, so neither Postgres nor Redis is reachable from any of nginx's networks.
"""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.container import LABEL_PREFIX
from components.settings import NetworkSettings

INTERNAL = {"edge": False, "app": True, "backend": True, "data": True, "monitoring": False, "control": True}


class Networks(pulumi.ComponentResource):
    edge: docker.Network
    app: docker.Network
    backend: docker.Network
    data: docker.Network
    monitoring: docker.Network
    control: docker.Network

    def __init__(
        self,
        name: str,
        stack: str,
        subnets: NetworkSettings,
        with_control: bool,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("stories:docker:Networks", name, None, opts)
        self.roles = [role for role in INTERNAL if role != "control" or with_control]
        for role in self.roles:
            internal = INTERNAL[role]
            network = docker.Network(
                role,
                name=f"{stack}-{role}",
                driver="bridge",
                internal=internal,
                attachable=False,
                ipam_configs=[docker.NetworkIpamConfigArgs(subnet=str(getattr(subnets, role)))],
                labels=[
                    docker.NetworkLabelArgs(label=f"{LABEL_PREFIX}.stack", value=stack),
                    docker.NetworkLabelArgs(label=f"{LABEL_PREFIX}.role", value=role),
                ],
                opts=pulumi.ResourceOptions(parent=self),
            )
            setattr(self, role, network)
        self.register_outputs({role: getattr(self, role).name for role in self.roles})
