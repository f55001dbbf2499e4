"""The Kubernetes stack (Pulumi.k8s.yaml) against mocks: its objects and their key fields, the built-in
kinds valid against the targeted Kubernetes version's OpenAPI schemas (kubernetes-validate, offline), the
operators' kinds valid against models generated from their CRDs, and the policy pack's Kubernetes rules."""

from __future__ import annotations

import copy
import json
from typing import Any

import kubernetes_validate
import pytest
from cloudcoil.models.cert_manager.v1 import Certificate, Issuer
from cloudcoil.models.keda.v1alpha1 import ScaledObject
from cloudcoil.models.prometheus_operator.v1 import PodMonitor, PrometheusRule, ServiceMonitor
from pydantic import BaseModel, ValidationError

from configs.kubernetes import postgres
from configs.metrics import KUBERNETES_METRICS, metric_names
from policy.props import Resource
from policy.validators import kubernetes_pod_security, violations
from tests.conftest import plan_of
from tests.crds import cloudnative_pg, envoy_gateway, gateway_api
from tools.plan import PlannedResource, format_table, run_plan, settings_for, stack_config

BUILT_IN = (
    "kubernetes:core/",
    "kubernetes:apps/",
    "kubernetes:batch/",
    "kubernetes:policy/",
    "kubernetes:networking.k8s.io/",
)
TYPED: dict[str, type[BaseModel]] = {
    "kubernetes:keda.sh/v1alpha1:ScaledObject": ScaledObject,
    "kubernetes:monitoring.coreos.com/v1:PrometheusRule": PrometheusRule,
    "kubernetes:monitoring.coreos.com/v1:PodMonitor": PodMonitor,
    "kubernetes:monitoring.coreos.com/v1:ServiceMonitor": ServiceMonitor,
    "kubernetes:cert-manager.io/v1:Certificate": Certificate,
    "kubernetes:cert-manager.io/v1:Issuer": Issuer,
    # Typed models of the fields used, checked against the CRDs of the pinned versions (tests/crds).
    "kubernetes:postgresql.cnpg.io/v1:Cluster": cloudnative_pg.Cluster,
    "kubernetes:postgresql.cnpg.io/v1:Pooler": cloudnative_pg.Pooler,
    "kubernetes:postgresql.cnpg.io/v1:ScheduledBackup": cloudnative_pg.ScheduledBackup,
    "kubernetes:gateway.networking.k8s.io/v1:GatewayClass": gateway_api.GatewayClass,
    "kubernetes:gateway.networking.k8s.io/v1:Gateway": gateway_api.Gateway,
    "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute": gateway_api.HTTPRoute,
    "kubernetes:gateway.envoyproxy.io/v1alpha1:BackendTrafficPolicy": envoy_gateway.BackendTrafficPolicy,
    "kubernetes:gateway.envoyproxy.io/v1alpha1:ClientTrafficPolicy": envoy_gateway.ClientTrafficPolicy,
}


def k8s_config(**sections: dict[str, Any]) -> dict[str, str]:
    """The k8s stack's config with each section's keys merged in."""
    config, _ = stack_config("k8s")
    raw = json.loads(config["1001-stories:settings"])
    for section, keys in sections.items():
        raw[section] = {**raw.get(section, {}), **keys}
    return {**config, "1001-stories:settings": json.dumps(raw)}


def objects(kind: str) -> list[PlannedResource]:
    return [r for r in plan_of("k8s").resources if r.type.startswith("kubernetes:") and r.type.endswith(f":{kind}")]


def one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [r.inputs for r in objects(kind) if (r.inputs.get("metadata") or {}).get("name") == name]
    return found


def as_manifest(resource: PlannedResource) -> dict[str, Any]:
    """The object as the provider sends it (numbers come back from mocks as floats)."""

    def ints(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, dict):
            return {key: ints(item) for key, item in value.items()}
        if isinstance(value, list):
            return [ints(item) for item in value]
        return value

    manifest: dict[str, Any] = ints(copy.deepcopy(resource.inputs))
    return manifest


def test_the_program_dispatches_on_the_target() -> None:
    types = {r.type for r in plan_of("k8s").resources}
    assert not any(t.startswith("docker:") for t in types)
    assert "kubernetes:postgresql.cnpg.io/v1:Cluster" in types
    assert plan_of("k8s").budget == {}


def test_operators_are_pinned_helm_releases() -> None:
    releases = {r.inputs["name"]: r.inputs for r in objects("Release")}
    assert set(releases) == {"cloudnative-pg", "keda", "cert-manager", "kube-prometheus-stack", "envoy-gateway"}
    assert all(release["version"][0] in "v0123456789" for release in releases.values())
    assert "ingress-nginx" not in str(releases)


def test_postgres_cluster_pooler_and_backups_follow_the_settings() -> None:
    settings = settings_for("k8s")
    cluster = one("Cluster", "postgres")["spec"]
    assert cluster["instances"] == 3
    parameters = cluster["postgresql"]["parameters"]
    assert parameters["shared_buffers"] == f"{settings.database.resources.memory_mb // 4}MB"
    assert parameters["pg_stat_statements.track"] == "top"
    assert "archive_command" not in parameters and "shared_preload_libraries" not in parameters
    assert not set(parameters) & postgres.OPERATOR_FIXED  # CloudNativePG's webhook would refuse the Cluster
    assert parameters["wal_level"] == "replica" and "ssl_min_protocol_version" not in parameters
    assert cluster["backup"]["retentionPolicy"] == "30d"
    assert cluster["backup"]["barmanObjectStore"]["destinationPath"].startswith("s3://")
    pooler = one("Pooler", "postgres-pooler-rw")["spec"]
    assert pooler["pgbouncer"]["poolMode"] == "transaction"
    assert pooler["pgbouncer"]["parameters"]["default_pool_size"] == "20"
    assert pooler["pgbouncer"]["parameters"]["max_db_connections"] == str(settings.pgbouncer.server_connections)
    assert set(pooler["pgbouncer"]["parameters"]) <= postgres.POOLER_ALLOWED
    assert one("ScheduledBackup", "postgres")["spec"]["schedule"] == "0 0 3 * * 0"


def test_the_app_is_hardened_spread_and_budgeted() -> None:
    deployment = one("Deployment", "app")["spec"]
    assert "replicas" not in deployment  # KEDA's HPA owns it
    pod = deployment["template"]["spec"]
    (container,) = pod["containers"]
    assert container["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/health"
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    assert pod["initContainers"][0]["name"] == "migration"
    assert one("PodDisruptionBudget", "app")["spec"]["maxUnavailable"] == 1


def test_the_scaled_object_keeps_the_bounds_and_the_stabilisation() -> None:
    spec = one("ScaledObject", "app")["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 6)
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 600
    assert {t["type"] for t in spec["triggers"]} == {"cron", "prometheus", "cpu"}


def test_network_policies_deny_by_default() -> None:
    deny = one("NetworkPolicy", "default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_secrets_are_secret_in_the_plan() -> None:
    assert all(r.inputs["stringData"] == "[secret]" for r in objects("Secret"))


@pytest.mark.parametrize("resource", [r for r in plan_of("k8s").resources if r.type.startswith(BUILT_IN)], ids=str)
def test_built_in_kinds_are_valid_for_the_targeted_version(resource: PlannedResource) -> None:
    manifest = as_manifest(resource)
    if manifest["kind"] == "Secret":
        manifest["stringData"] = {}
    version = f"{settings_for('k8s').kubernetes.version}.0"
    kubernetes_validate.validate(manifest, version, strict=True)


def read_back(model: type[BaseModel], manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as the model reads it. cloudcoil's models ignore unknown fields, so a field the CRD
    does not have is missing from what they give back."""
    back: dict[str, Any] = model.model_validate(manifest).model_dump(by_alias=True, exclude_unset=True, mode="json")
    return back


@pytest.mark.parametrize("resource", [r for r in plan_of("k8s").resources if r.type in TYPED], ids=str)
def test_custom_resources_are_valid_against_the_operators_crd_models(resource: PlannedResource) -> None:
    manifest = as_manifest(resource)
    assert read_back(TYPED[resource.type], manifest) == manifest


def test_every_custom_resource_of_the_plan_has_a_model() -> None:
    custom = {
        r.type
        for r in plan_of("k8s").resources
        if r.type.startswith("kubernetes:") and not r.type.startswith((*BUILT_IN, "kubernetes:helm.sh/"))
    }
    assert custom == set(TYPED)


def test_a_field_the_crd_lacks_is_caught() -> None:
    certificate = as_manifest(next(r for r in objects("Certificate")))
    certificate["spec"]["dnsName"] = certificate["spec"]["dnsNames"][0]
    assert read_back(Certificate, certificate) != certificate
    cluster = as_manifest(next(r for r in objects("Cluster")))
    cluster["spec"]["storage"]["storageClassName"] = "fast"  # the PVC's spelling, not the Cluster's
    with pytest.raises(ValidationError, match="storageClassName"):
        cloudnative_pg.Cluster.model_validate(cluster)
    route = as_manifest(next(r for r in objects("HTTPRoute")))
    route["spec"]["rules"][0]["filters"] = [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 399}}]
    with pytest.raises(ValidationError, match="statusCode"):
        gateway_api.HTTPRoute.model_validate(route)


def test_the_policy_pack_passes_the_k8s_plan_and_fails_a_broken_workload() -> None:
    resources = [Resource(r.type, r.name, r.parent, copy.deepcopy(r.inputs)) for r in plan_of("k8s").resources]
    assert violations(resources) == []
    deployment = copy.deepcopy(one("Deployment", "app"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    found = kubernetes_pod_security("kubernetes:apps/v1:Deployment", deployment, "app")
    assert found == ["app/app: set securityContext.readOnlyRootFilesystem: true"]


def test_the_table_groups_objects_by_component() -> None:
    table = format_table(plan_of("k8s"))
    for component in ("[database]", "[app]", "[scaling]", "[network]", "[operators]", "[monitoring]"):
        assert component in table


def test_a_stack_with_app_metrics_scrapes_every_replica_and_keda_reads_its_sessions() -> None:
    """The k8s stack with app.metricsPath: a PodMonitor of the app (valid for the CRD), Prometheus let in to the
    app's port, and the ScaledObject's sessions query the series that PodMonitor brings (job `app`, the pods'
    namespace)."""
    _, secret_keys = stack_config("k8s")
    plan = run_plan("k8s", k8s_config(app={"metricsPath": "/api/metrics"}), secret_keys)
    found = {
        (r.type.rsplit(":", 1)[-1], r.inputs["metadata"]["name"]): r for r in plan.resources if "metadata" in r.inputs
    }
    monitor = as_manifest(found[("PodMonitor", "app")])
    assert read_back(PodMonitor, monitor) == monitor
    assert monitor["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/name": "app"}}
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"  # job="app", as on Docker
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "http", "path": "/api/metrics", "interval": "15s"}]
    (ingress,) = found[("NetworkPolicy", "app")].inputs["spec"]["ingress"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}} in ingress["from"]
    (sessions,) = [t for t in found[("ScaledObject", "app")].inputs["spec"]["triggers"] if t["type"] == "prometheus"]
    assert sessions["metadata"]["query"] == 'sum(stories_active_sessions{namespace="stories"})'
    assert metric_names(sessions["metadata"]["query"]) == {"stories_active_sessions"}
    assert KUBERNETES_METRICS["stories_active_sessions"] == "app-contract"


def test_without_app_metrics_nothing_scrapes_the_app_nor_reaches_it_from_monitoring() -> None:
    assert "app" not in {r.inputs["metadata"]["name"] for r in objects("PodMonitor")}
    (ingress,) = one("NetworkPolicy", "app")["spec"]["ingress"]
    assert "monitoring" not in str(ingress["from"])


def test_the_gateways_envoy_proxies_are_scraped_in_envoy_gateways_namespace() -> None:
    """SlowResponses reads their request times: Envoy Gateway runs the proxies in its own namespace."""
    (found,) = [r for r in objects("PodMonitor") if r.inputs["metadata"]["name"] == "stories-gateway"]
    monitor = as_manifest(found)
    assert read_back(PodMonitor, monitor) == monitor
    assert monitor["metadata"]["namespace"] == settings_for("k8s").kubernetes.operators.envoy_gateway.namespace
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "envoy",
        "app.kubernetes.io/component": "proxy",
        "gateway.envoyproxy.io/owning-gateway-name": "gateway",
        "gateway.envoyproxy.io/owning-gateway-namespace": "stories",
    }
    assert monitor["spec"]["podMetricsEndpoints"] == [
        {"port": "metrics", "path": "/stats/prometheus", "interval": "15s"}
    ]
