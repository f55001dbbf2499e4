"""Envoy Gateway v1.8.3 (the pinned kubernetes.operators.envoyGateway): BackendTrafficPolicy and
ClientTrafficPolicy, gateway.envoyproxy.io/v1alpha1. Each field checked against github.com/envoyproxy/gateway
v1.8.3 charts/gateway-helm/charts/crds/crds/generated/gateway.envoyproxy.io_backendtrafficpolicies.yaml and
gateway.envoyproxy.io_clienttrafficpolicies.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tests.crds import Metadata, Strict

# The CRD's Kubernetes quantity patterns (requestBuffer.limit: a positive quantity, no sign or fraction).
QUANTITY = r"^[1-9]+[0-9]*([EPTGMK]i|[EPTGMk])?$"


class TargetRef(Strict):
    """spec.targetRefs[] (group, kind, name required)"""

    group: Literal["gateway.networking.k8s.io"]
    kind: Literal["Gateway", "HTTPRoute"]
    name: str = Field(min_length=1, max_length=253)
    section_name: str | None = Field(default=None, min_length=1, max_length=253)


class SourceCidr(Strict):
    type: Literal["Exact", "Distinct"]
    value: str = Field(min_length=1, max_length=256)  # required


class ClientSelector(Strict):
    source_cidr: SourceCidr = Field(alias="sourceCIDR")


class Limit(Strict):
    requests: int = Field(ge=1, le=4294967295)  # required
    unit: Literal["Second", "Minute", "Hour", "Day", "Month", "Year"]  # required


class RateLimitRule(Strict):
    client_selectors: list[ClientSelector] = Field(max_length=8)
    limit: Limit  # required


class LocalRateLimit(Strict):
    rules: list[RateLimitRule] = Field(max_length=16)


class RateLimit(Strict):
    type: Literal["Global", "Local"]
    local: LocalRateLimit


class RequestBuffer(Strict):
    limit: str = Field(pattern=QUANTITY)


class Compressor(Strict):
    type: Literal["Gzip", "Brotli", "Zstd"]  # required
    min_content_length: int = Field(ge=30)  # Envoy's minimum


class BackendTrafficPolicySpec(Strict):
    target_refs: list[TargetRef]
    rate_limit: RateLimit | None = None
    request_buffer: RequestBuffer | None = None
    compressor: list[Compressor] | None = None


class BackendTrafficPolicy(Strict):
    api_version: Literal["gateway.envoyproxy.io/v1alpha1"]
    kind: Literal["BackendTrafficPolicy"]
    metadata: Metadata
    spec: BackendTrafficPolicySpec


class Tls(Strict):
    min_version: Literal["Auto", "1.0", "1.1", "1.2", "1.3"]
    ciphers: list[str]


class Header(Strict):
    name: str = Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9!#$%&'*+\-.^_\x60|~]+$")
    value: str = Field(min_length=1, max_length=4096)


class ResponseHeaders(Strict):
    set: list[Header] = Field(min_length=1, max_length=64)


class Headers(Strict):
    late_response_headers: ResponseHeaders


class HealthCheck(Strict):
    path: str = Field(min_length=1, max_length=1024)  # required


class ClientTrafficPolicySpec(Strict):
    target_refs: list[TargetRef]
    tls: Tls
    headers: Headers
    health_check: HealthCheck


class ClientTrafficPolicy(Strict):
    api_version: Literal["gateway.envoyproxy.io/v1alpha1"]
    kind: Literal["ClientTrafficPolicy"]
    metadata: Metadata
    spec: ClientTrafficPolicySpec
