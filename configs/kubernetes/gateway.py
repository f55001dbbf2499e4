"""The front door on Kubernetes: the Gateway API implemented by Envoy Gateway, with the Docker target's
nginx rules (configs/templates/nginx/nginx.conf.j2) as far as Envoy Gateway's resources carry them, and
the certificate from cert-manager (ACME as the Docker target's certbot, or self-signed).

- a GatewayClass of Envoy Gateway's controller and a Gateway: HTTPS (the certificate's Secret) and HTTP,
  which only redirects to HTTPS (cert-manager's HTTP-01 solver adds its own exact-path route there);
- HTTPRoutes, one per rate-limit class, because a BackendTrafficPolicy targets a whole route: sign-in
  (/api/auth), the API (/api), the app (build assets cached as immutable, everything else), and the
  served data directories (to the static server of configs/kubernetes/files.py, with their cache rules);
- BackendTrafficPolicies: a local rate limit per client address (a distinct bucket per source IP; Envoy
  Gateway supports that from v1.4) for sign-in and the API, the body size as a request buffer limit on
  those routes, gzip on the app's responses;
- a ClientTrafficPolicy on the HTTPS listener: TLS 1.2+ with nginx's ciphers, nginx's security headers
  on every response (late response headers, so also on the gateway's own 429s, as nginx's `always`),
  and the listener's health path.

What Envoy Gateway cannot do that nginx does is listed in the README (The Kubernetes target)."""

from __future__ import annotations

import base64
from typing import Any

from configs.kubernetes.app import APP
from configs.kubernetes.common import Manifest, labels, manifest
from configs.kubernetes.files import FILES, FILES_PORT
from configs.render import served_data_dirs
from model.settings import Settings

GATEWAY_API = "gateway.networking.k8s.io/v1"
GATEWAY_GROUP = "gateway.networking.k8s.io"
ENVOY_GATEWAY = "gateway.envoyproxy.io/v1alpha1"
CERT_MANAGER = "cert-manager.io/v1"
CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"  # Envoy Gateway's GatewayClass controller
GATEWAY = "gateway"
AUTH_ROUTE, API_ROUTE = "app-auth", "app-api"
APP_ROUTES = (AUTH_ROUTE, API_ROUTE, APP)  # the HTTPRoutes to the app
TLS_SECRET = "gateway-tls"
ACME_ACCOUNT_SECRET = "acme-account"
LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
# nginx's ssl_ciphers (TLS 1.2; TLS 1.3's suites are not configurable, in nginx as in Envoy).
CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
)
HEALTH_PATH = "/health"
EVERY_ADDRESS = ("0.0.0.0/0", "::/0")


def gateway_class_name(namespace: str) -> str:
    """GatewayClasses are cluster-wide: one per stack's namespace, so that two stacks never share one."""
    return f"{namespace}-envoy"


def gateway_class(namespace: str) -> Manifest:
    metadata = {"name": gateway_class_name(namespace), "labels": labels("gateway")}
    spec = {"controllerName": CONTROLLER}
    return {"apiVersion": GATEWAY_API, "kind": "GatewayClass", "metadata": metadata, "spec": spec}


def _gateway_manifest(api_version: str, kind: str, name: str, namespace: str, **body: Any) -> Manifest:
    return manifest(api_version, kind, name, namespace, "gateway", **body)


def gateway(settings: Settings, namespace: str) -> Manifest:
    same = {"namespaces": {"from": "Same"}}
    listeners = [
        {"name": "http", "protocol": "HTTP", "port": 80, "hostname": settings.domain, "allowedRoutes": same},
        {
            "name": "https",
            "protocol": "HTTPS",
            "port": 443,
            "hostname": settings.domain,
            "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": TLS_SECRET}]},
            "allowedRoutes": same,
        },
    ]
    spec = {"gatewayClassName": gateway_class_name(namespace), "listeners": listeners}
    return _gateway_manifest(GATEWAY_API, "Gateway", GATEWAY, namespace, spec=spec)


def _listener(namespace: str, section: str) -> dict[str, str]:
    return {"group": GATEWAY_GROUP, "kind": "Gateway", "name": GATEWAY, "namespace": namespace, "sectionName": section}


def acme_server(settings: Settings) -> str:
    """The ACME directory certbot uses on the Docker target (configs/render.py certbot_server_args)."""
    tls = settings.proxy.tls
    if tls.acme_directory_url:
        return tls.acme_directory_url
    return LETSENCRYPT_STAGING if tls.acme_staging else LETSENCRYPT


def issuer_name(settings: Settings) -> str:
    return "acme" if settings.proxy.tls.mode == "letsencrypt" else "self-signed"


def issuer(settings: Settings, namespace: str) -> Manifest:
    """A namespaced Issuer (the stack's certificate only; no ClusterIssuer for other namespaces to use):
    ACME with HTTP-01 through the Gateway's HTTP listener, or self-signed as the Docker target's default."""
    tls = settings.proxy.tls
    spec: dict[str, Any]
    if tls.mode == "letsencrypt":
        acme: dict[str, Any] = {
            "email": tls.email,
            "server": acme_server(settings),
            "privateKeySecretRef": {"name": ACME_ACCOUNT_SECRET},
            "solvers": [{"http01": {"gatewayHTTPRoute": {"parentRefs": [_listener(namespace, "http")]}}}],
        }
        if tls.acme_ca_certificate_pem:
            acme["caBundle"] = base64.b64encode(tls.acme_ca_certificate_pem.encode()).decode()
        spec = {"acme": acme}
    else:
        spec = {"selfSigned": {}}
    return _gateway_manifest(CERT_MANAGER, "Issuer", issuer_name(settings), namespace, spec=spec)


def certificate(settings: Settings, namespace: str) -> Manifest:
    spec = {
        "secretName": TLS_SECRET,
        "dnsNames": [settings.domain],
        "issuerRef": {"name": issuer_name(settings), "kind": "Issuer"},
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
    }
    return _gateway_manifest(CERT_MANAGER, "Certificate", TLS_SECRET, namespace, spec=spec)


def _prefix(url_path: str) -> list[dict[str, Any]]:
    """Gateway API prefixes match whole path segments, so nginx's `/api/` is `/api`."""
    return [{"path": {"type": "PathPrefix", "value": url_path.rstrip("/") or "/"}}]


def _cache(value: str) -> list[dict[str, Any]]:
    modifier = {"set": [{"name": "Cache-Control", "value": value}]}
    return [{"type": "ResponseHeaderModifier", "responseHeaderModifier": modifier}]


def _backend(name: str, port: int) -> list[dict[str, Any]]:
    return [{"name": name, "port": port}]


def _route(namespace: str, name: str, rules: list[dict[str, Any]], section: str = "https") -> Manifest:
    spec = {"parentRefs": [_listener(namespace, section)], "rules": rules}
    return _gateway_manifest(GATEWAY_API, "HTTPRoute", name, namespace, spec=spec)


def http_routes(settings: Settings, namespace: str) -> list[Manifest]:
    app = _backend(APP, settings.app.port)
    immutable = f"public, max-age={settings.proxy.static_cache_days * 86400}, immutable"
    redirect = {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}
    files = [
        {
            "matches": _prefix(each.url_path),
            "filters": _cache(f"public, max-age={each.max_age_seconds}"),
            "backendRefs": _backend(FILES, FILES_PORT),
        }
        for each in served_data_dirs(settings)
    ]
    routes = [
        _route(namespace, "redirect-to-https", [{"filters": [redirect]}], section="http"),
        _route(namespace, AUTH_ROUTE, [{"matches": _prefix("/api/auth/"), "backendRefs": app}]),
        _route(namespace, API_ROUTE, [{"matches": _prefix("/api/"), "backendRefs": app}]),
        _route(
            namespace,
            APP,
            [
                {"matches": _prefix("/_next/static/"), "filters": _cache(immutable), "backendRefs": app},
                {"matches": _prefix("/"), "backendRefs": app},
            ],
        ),
    ]
    if files:
        routes.append(_route(namespace, FILES, files))
    return routes


def _targets(kind: str, name: str, section: str | None = None) -> list[dict[str, str]]:
    target = {"group": GATEWAY_GROUP, "kind": kind, "name": name}
    return [target | {"sectionName": section} if section else target]


def _per_client(requests: int, unit: str) -> dict[str, Any]:
    """A bucket of `requests` per `unit` for each client address (IPv4 and IPv6)."""
    rules = [
        {
            "clientSelectors": [{"sourceCIDR": {"type": "Distinct", "value": cidr}}],
            "limit": {"requests": requests, "unit": unit},
        }
        for cidr in EVERY_ADDRESS
    ]
    return {"type": "Local", "local": {"rules": rules}}


def traffic_policies(settings: Settings, namespace: str) -> list[Manifest]:
    proxy = settings.proxy
    limits, body = proxy.rate_limits, {"limit": f"{proxy.client_max_body_mb}Mi"}
    gzip = [{"type": "Gzip", "minContentLength": 1024}]  # nginx's gzip_min_length

    def backend(route: str, **spec: Any) -> Manifest:
        return _gateway_manifest(
            ENVOY_GATEWAY,
            "BackendTrafficPolicy",
            route,
            namespace,
            spec={"targetRefs": _targets("HTTPRoute", route), **spec},
        )

    client = {
        "targetRefs": _targets("Gateway", GATEWAY, "https"),
        "tls": {"minVersion": "1.2", "ciphers": list(CIPHERS)},
        "headers": {"lateResponseHeaders": {"set": security_headers(settings)}},
        "healthCheck": {"path": HEALTH_PATH},
    }
    return [
        backend(AUTH_ROUTE, rateLimit=_per_client(limits.auth_per_minute, "Minute"), requestBuffer=body),
        backend(API_ROUTE, rateLimit=_per_client(limits.api_per_second, "Second"), requestBuffer=body),
        backend(APP, compressor=gzip),
        _gateway_manifest(ENVOY_GATEWAY, "ClientTrafficPolicy", GATEWAY, namespace, spec=client),
    ]


def security_headers(settings: Settings) -> list[dict[str, str]]:
    """nginx's security_headers() macro."""
    headers = {
        "Strict-Transport-Security": f"max-age={settings.proxy.hsts_max_age_seconds}; includeSubDomains",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "SAMEORIGIN",
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }
    return [{"name": name, "value": value} for name, value in headers.items()]


def front_door(settings: Settings, namespace: str) -> list[Manifest]:
    """Every object of the front door but the GatewayClass (cluster-wide, created apart)."""
    return [
        gateway(settings, namespace),
        issuer(settings, namespace),
        certificate(settings, namespace),
        *http_routes(settings, namespace),
        *traffic_policies(settings, namespace),
    ]
