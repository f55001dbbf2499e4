"""The stack's Docker networks and who may join which.

- edge (public): nginx, and certbot for ACME.
- app (internal): nginx and the app replicas; nginx reaches the app only here (and the probes and
  Prometheus, which find the running replicas by the `app` alias).
- backend (internal): the app, PgBouncer and Redis.
- data (internal): PgBouncer, Postgres (and the backup jobs).
- monitoring (not internal, so Prometheus, Alertmanager and Grafana can publish on 127.0.0.1 and
  Alertmanager can reach its receivers): Prometheus and the exporters, each exporter also joining the
  one network of the service it reads.
- control (internal, only with scaling): the scaler and the Docker API proxy, nothing else.
- egress-<service> (with a route out): one per service that must reach outside (tuning.egress_services:
  the app; Postgres and the backup service when backups go to S3). One service per network, so a route
  out never comes with a neighbour: Postgres's egress network reaches S3 and nothing of the stack.

nginx is on edge and app only, so neither Postgres nor Redis is reachable from any of nginx's networks.
"""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.container import LABEL_PREFIX, Attachment
from model.settings import Settings
from model.tuning import egress_services, egress_subnet

INTERNAL = {"edge": False, "app": True, "backend": True, "data": True, "monitoring": False, "control": True}


class Networks(pulumi.ComponentResource):
    edge: docker.Network
    app: docker.Network
    backend: docker.Network
    data: docker.Network
    monitoring: docker.Network
    control: docker.Network

    def __init__(self, name: str, stack: str, settings: Settings, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stories:docker:Networks", name, None, opts)
        self._stack = stack
        subnets = settings.networks.subnets()
        self.roles = [role for role in INTERNAL if role != "control" or settings.scaling.enabled]
        for role in self.roles:
            setattr(self, role, self._network(role, str(subnets[role]), INTERNAL[role]))
        self.egress = {
            service: self._network(
                f"egress-{service}", str(egress_subnet(settings, service)), settings.networks.egress_internal
            )
            for service in egress_services(settings)
        }
        self.register_outputs(
            {
                **{role: getattr(self, role).name for role in self.roles},
                **{f"egress-{service}": network.name for service, network in self.egress.items()},
            }
        )

    def egress_of(self, service: str) -> list[Attachment]:
        """The service's own network with a route out, when the stack gives it one."""
        network = self.egress.get(service)
        return [Attachment(network, [service])] if network is not None else []

    def _network(self, role: str, subnet: str, internal: bool) -> docker.Network:
        return docker.Network(
            role,
            name=f"{self._stack}-{role}",
            driver="bridge",
            internal=internal,
            attachable=False,
            ipam_configs=[docker.NetworkIpamConfigArgs(subnet=subnet)],
            labels=[
                docker.NetworkLabelArgs(label=f"{LABEL_PREFIX}.stack", value=self._stack),
                docker.NetworkLabelArgs(label=f"{LABEL_PREFIX}.role", value=role),
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
