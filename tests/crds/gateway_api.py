"""The Gateway API v1.5.1, standard channel (the version Envoy Gateway v1.8.3 builds on: its go.mod's
sigs.k8s.io/gateway-api, and the CRDs its chart installs): GatewayClass, Gateway and HTTPRoute,
gateway.networking.k8s.io/v1. Each field checked against github.com/kubernetes-sigs/gateway-api v1.5.1
config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml, _gateways.yaml and _httproutes.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tests.crds import Metadata, Strict

Name = str  # a Gateway API object name: 1 to 253 characters
SectionName = str


class GatewayClassSpec(Strict):
    controller_name: str = Field(min_length=1, max_length=253)  # required


class GatewayClass(Strict):
    api_version: Literal["gateway.networking.k8s.io/v1"]
    kind: Literal["GatewayClass"]
    metadata: Metadata
    spec: GatewayClassSpec


class CertificateRef(Strict):
    """spec.listeners[].tls.certificateRefs[] (name required)"""

    kind: Literal["Secret"]
    name: Name


class ListenerTls(Strict):
    mode: Literal["Terminate", "Passthrough"]
    certificate_refs: list[CertificateRef] = Field(max_length=64)


class RouteNamespaces(Strict):
    from_: Literal["All", "Selector", "Same"] = Field(alias="from")


class AllowedRoutes(Strict):
    namespaces: RouteNamespaces


class Listener(Strict):
    """spec.listeners[] (name, port, protocol required)"""

    name: SectionName = Field(max_length=253)
    protocol: str = Field(pattern=r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$", max_length=255)
    port: int = Field(ge=1, le=65535)
    hostname: str = Field(max_length=253)
    tls: ListenerTls | None = None
    allowed_routes: AllowedRoutes


class GatewaySpec(Strict):
    gateway_class_name: Name  # required
    listeners: list[Listener] = Field(min_length=1, max_length=64)  # required


class Gateway(Strict):
    api_version: Literal["gateway.networking.k8s.io/v1"]
    kind: Literal["Gateway"]
    metadata: Metadata
    spec: GatewaySpec


class ParentRef(Strict):
    """spec.parentRefs[] (name required)"""

    group: Literal["gateway.networking.k8s.io"]
    kind: Literal["Gateway"]
    name: Name
    namespace: str
    section_name: SectionName


class PathMatch(Strict):
    type: Literal["Exact", "PathPrefix", "RegularExpression"]
    value: str = Field(max_length=1024)


class RouteMatch(Strict):
    path: PathMatch


class Header(Strict):
    name: str = Field(min_length=1, max_length=256)
    value: str = Field(min_length=1, max_length=4096)


class HeaderModifier(Strict):
    set: list[Header] = Field(max_length=16)


class RequestRedirect(Strict):
    scheme: Literal["http", "https"]
    status_code: Literal[301, 302, 303, 307, 308]


class Filter(Strict):
    """spec.rules[].filters[] (type required; the field of its type set)"""

    type: Literal["ResponseHeaderModifier", "RequestRedirect"]
    response_header_modifier: HeaderModifier | None = None
    request_redirect: RequestRedirect | None = None


class BackendRef(Strict):
    """spec.rules[].backendRefs[] (a Service in the route's namespace; name required)"""

    name: Name
    port: int = Field(ge=1, le=65535)


class Rule(Strict):
    matches: list[RouteMatch] = Field(default_factory=list, max_length=64)
    filters: list[Filter] = Field(default_factory=list, max_length=16)
    backend_refs: list[BackendRef] = Field(default_factory=list, max_length=16)


class HTTPRouteSpec(Strict):
    parent_refs: list[ParentRef] = Field(max_length=32)
    rules: list[Rule] = Field(min_length=1, max_length=16)


class HTTPRoute(Strict):
    api_version: Literal["gateway.networking.k8s.io/v1"]
    kind: Literal["HTTPRoute"]
    metadata: Metadata
    spec: HTTPRouteSpec
