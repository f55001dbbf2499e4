"""NetworkPolicies: deny everything in the namespace, then allow what the platform needs, by pod labels."""

from __future__ import annotations

from typing import Any

from configs.kubernetes.app import APP
from configs.kubernetes.backup import FILES_BACKUP, REDIS_BACKUP
from configs.kubernetes.common import Manifest, manifest, selector
from configs.kubernetes.cron import CRON
from configs.kubernetes.files import FILES, FILES_PORT
from configs.kubernetes.redis import EXPORTER_PORT, REDIS
from model.settings import Settings
from model.topology import POOLER, POSTGRES_CLUSTER, POSTGRES_PORT, REDIS_PORT

POSTGRES_PODS = {"cnpg.io/cluster": POSTGRES_CLUSTER, "cnpg.io/podRole": "instance"}
POOLER_PODS = {"cnpg.io/poolerName": POOLER}
CNPG_METRICS_PORT = 9187
CNPG_STATUS_PORT = 8000
POOLER_METRICS_PORT = 9127
KUBE_API_PORTS = (443, 6443)  # the instance manager and the operator talk to the API server
# cert-manager's HTTP-01 solver pods, in the Certificate's namespace, answer the gateway on this port.
ACME_SOLVER_PODS = {"acme.cert-manager.io/http01-solver": "true"}
ACME_SOLVER_PORT = 8089


def _namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def _ports(*numbers: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": number} for number in numbers]


def _policy(namespace: str, name: str, pods: dict[str, str], **rules: list[dict[str, Any]]) -> Manifest:
    types = [kind.capitalize() for kind in ("ingress", "egress") if kind in rules]
    spec = {"podSelector": {"matchLabels": pods}, "policyTypes": types, **rules}
    return manifest("networking.k8s.io/v1", "NetworkPolicy", name, namespace, "network", spec=spec)


def _app_ingress(settings: Settings, gateway: dict[str, Any], monitoring: dict[str, Any]) -> list[dict[str, Any]]:
    """The gateway, the app's scheduled calls and, where the app is scraped (app.metricsPath, on its HTTP port),
    Prometheus."""
    callers = [gateway]
    if settings.cron.enabled:
        callers.append({"podSelector": {"matchLabels": selector(CRON)}})
    if settings.app.metrics_path:
        callers.append(monitoring)
    return [{"from": callers, "ports": _ports(settings.app.port)}]


def network_policies(settings: Settings, namespace: str) -> list[Manifest]:
    operators = settings.kubernetes.operators
    monitoring = _namespace(operators.kube_prometheus_stack.namespace)
    anywhere = {"ipBlock": {"cidr": "0.0.0.0/0"}}
    app_pods, redis_pods = selector(APP), selector(REDIS)
    deny = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = {"to": [_namespace("kube-system")], "ports": [{"protocol": p, "port": 53} for p in ("UDP", "TCP")]}
    postgres_egress = [{"to": [anywhere], "ports": _ports(*KUBE_API_PORTS)}]
    scheduled: list[Manifest] = []  # the CronJobs' pods
    redis_clients = [{"podSelector": {"matchLabels": app_pods}}]
    if settings.backup.s3.enabled:
        postgres_egress.append({"to": [anywhere], "ports": _ports(443)})  # WAL and base backups to S3
        s3 = {"to": [anywhere], "ports": _ports(443)}
        to_redis = {"to": [{"podSelector": {"matchLabels": redis_pods}}], "ports": _ports(REDIS_PORT)}
        scheduled.append(_policy(namespace, FILES_BACKUP, selector(FILES_BACKUP), egress=[s3]))
        scheduled.append(_policy(namespace, REDIS_BACKUP, selector(REDIS_BACKUP), egress=[s3, to_redis]))  # BGSAVE
        redis_clients.append({"podSelector": {"matchLabels": selector(REDIS_BACKUP)}})
    if settings.cron.enabled:
        to_app = {"to": [{"podSelector": {"matchLabels": app_pods}}], "ports": _ports(settings.app.port)}
        scheduled.append(_policy(namespace, CRON, selector(CRON), egress=[to_app]))
    gateway = _namespace(operators.envoy_gateway.namespace)
    return [
        manifest("networking.k8s.io/v1", "NetworkPolicy", "default-deny", namespace, "network", spec=deny),
        *scheduled,
        _policy(namespace, FILES, selector(FILES), ingress=[{"from": [gateway], "ports": _ports(FILES_PORT)}]),
        _policy(
            namespace, "acme-solver", ACME_SOLVER_PODS, ingress=[{"from": [gateway], "ports": _ports(ACME_SOLVER_PORT)}]
        ),
        _policy(namespace, "allow-dns", {}, egress=[dns]),
        _policy(
            namespace,
            "app",
            app_pods,
            ingress=_app_ingress(settings, gateway, monitoring),
            egress=[
                {"to": [{"podSelector": {"matchLabels": POOLER_PODS}}], "ports": _ports(POSTGRES_PORT)},
                {"to": [{"podSelector": {"matchLabels": POSTGRES_PODS}}], "ports": _ports(POSTGRES_PORT)},  # migration
                {"to": [{"podSelector": {"matchLabels": redis_pods}}], "ports": _ports(REDIS_PORT)},
                {"to": [anywhere], "ports": _ports(443, 587)},  # e-mail, OAuth, the OpenAI API
            ],
        ),
        _policy(
            namespace,
            "redis",
            redis_pods,
            ingress=[
                {"from": redis_clients, "ports": _ports(REDIS_PORT)},
                {"from": [monitoring], "ports": _ports(EXPORTER_PORT)},
            ],
        ),
        _policy(
            namespace,
            "pooler",
            POOLER_PODS,
            ingress=[
                {"from": [{"podSelector": {"matchLabels": app_pods}}], "ports": _ports(POSTGRES_PORT)},
                {"from": [monitoring], "ports": _ports(POOLER_METRICS_PORT)},
            ],
            egress=[
                {"to": [{"podSelector": {"matchLabels": POSTGRES_PODS}}], "ports": _ports(POSTGRES_PORT)},
                {"to": [anywhere], "ports": _ports(*KUBE_API_PORTS)},
            ],
        ),
        _policy(
            namespace,
            "postgres",
            POSTGRES_PODS,
            ingress=[
                {
                    "from": [{"podSelector": {"matchLabels": POOLER_PODS}}, {"podSelector": {"matchLabels": app_pods}}],
                    "ports": _ports(POSTGRES_PORT),
                },
                {"from": [{"podSelector": {"matchLabels": POSTGRES_PODS}}], "ports": _ports(POSTGRES_PORT)},
                {
                    "from": [_namespace(operators.cloudnative_pg.namespace)],
                    "ports": _ports(CNPG_STATUS_PORT, POSTGRES_PORT),
                },
                {"from": [monitoring], "ports": _ports(CNPG_METRICS_PORT)},
            ],
            egress=[
                {"to": [{"podSelector": {"matchLabels": POSTGRES_PODS}}], "ports": _ports(POSTGRES_PORT)},
                *postgres_egress,
            ],
        ),
    ]
