"""The Kubernetes target's front door against the Docker target's nginx: the same rate limits, body size,
security headers, cache rules and served directories, the certificate from the same ACME directory."""

from __future__ import annotations

import json
import re
from typing import Any

from configs.kubernetes import gateway
from configs.kubernetes.files import FILES, FILES_PORT
from configs.render import image_versions, render_files_server, render_nginx, served_data_dirs
from model.settings import Settings
from model.topology import container_topology
from tests.unit.test_k8s_plan import one
from tools.plan import settings_for, settings_of, stack_config

SETTINGS = settings_for("k8s")


def k8s_with(tls: dict[str, Any] | None = None, data_dirs: list[dict[str, Any]] | None = None) -> Settings:
    """The k8s stack's settings with proxy.tls keys changed, or app.dataDirs replaced."""
    config, _ = stack_config("k8s")
    raw = json.loads(config["1001-stories:settings"])
    raw["proxy"]["tls"] = {**raw["proxy"]["tls"], **(tls or {})}
    if data_dirs is not None:
        raw["app"]["dataDirs"] = data_dirs
    return settings_of({**config, "1001-stories:settings": json.dumps(raw)})


def nginx_conf() -> str:
    return render_nginx(SETTINGS, container_topology(SETTINGS), image_versions(SETTINGS))["nginx.conf"]


def rules_of(route: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = one("HTTPRoute", route)["spec"]["rules"]
    return rules


def prefixes(route: str) -> list[str]:
    return [rule["matches"][0]["path"]["value"] for rule in rules_of(route)]


def rate_limit(route: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = one("BackendTrafficPolicy", route)["spec"]["rateLimit"]["local"]["rules"]
    return rules


def test_the_gateway_terminates_tls_with_the_certificate_and_redirects_plain_http() -> None:
    listeners = {each["name"]: each for each in one("Gateway", "gateway")["spec"]["listeners"]}
    assert listeners["https"]["tls"]["certificateRefs"] == [{"kind": "Secret", "name": "gateway-tls"}]
    assert {each["hostname"] for each in listeners.values()} == {SETTINGS.domain}
    (redirect,) = rules_of("redirect-to-https")
    assert redirect["filters"][0]["requestRedirect"] == {"scheme": "https", "statusCode": 301}
    assert one("HTTPRoute", "redirect-to-https")["spec"]["parentRefs"][0]["sectionName"] == "http"
    assert one("Certificate", "gateway-tls")["spec"]["secretName"] == "gateway-tls"


def test_the_issuer_is_the_acme_directory_certbot_uses() -> None:
    acme = one("Issuer", "acme")["spec"]["acme"]
    assert (acme["email"], acme["server"]) == (SETTINGS.proxy.tls.email, gateway.LETSENCRYPT)
    assert acme["solvers"][0]["http01"]["gatewayHTTPRoute"]["parentRefs"][0]["sectionName"] == "http"
    assert gateway.acme_server(k8s_with({"acmeStaging": True})) == gateway.LETSENCRYPT_STAGING
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    private = k8s_with({"acmeDirectoryUrl": "https://acme.internal/dir", "acmeCaCertificatePem": pem})
    private_acme = gateway.issuer(private, "stories")["spec"]["acme"]
    assert private_acme["server"] == "https://acme.internal/dir"
    assert private_acme["caBundle"].startswith("LS0tLS1CRUdJTi")  # base64 of the PEM
    self_signed = k8s_with({"mode": "self-signed"})
    assert gateway.issuer(self_signed, "stories")["spec"] == {"selfSigned": {}}
    assert gateway.certificate(self_signed, "stories")["spec"]["issuerRef"]["name"] == "self-signed"


def test_rate_limits_are_nginx_zones_per_client_address() -> None:
    conf = nginx_conf()
    api = re.search(r"zone=api:10m rate=(\d+)r/s", conf)
    auth = re.search(r"zone=auth:10m rate=(\d+)r/m", conf)
    assert api and auth
    expected = {"app-api": (int(api[1]), "Second"), "app-auth": (int(auth[1]), "Minute")}
    for route, (requests, unit) in expected.items():
        rules = rate_limit(route)
        assert {rule["clientSelectors"][0]["sourceCIDR"]["value"] for rule in rules} == {"0.0.0.0/0", "::/0"}
        assert all(rule["clientSelectors"][0]["sourceCIDR"]["type"] == "Distinct" for rule in rules)
        assert all(rule["limit"] == {"requests": requests, "unit": unit} for rule in rules)
        target = one("BackendTrafficPolicy", route)["spec"]["targetRefs"]
        assert target == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": route}]
    assert prefixes("app-auth") == ["/api/auth"] and prefixes("app-api") == ["/api"]
    assert "rateLimit" not in one("BackendTrafficPolicy", "app")["spec"]


def test_the_body_size_is_nginx_client_max_body_size() -> None:
    size = re.search(r"client_max_body_size (\d+)m;", nginx_conf())
    assert size
    for route in ("app-api", "app-auth"):
        assert one("BackendTrafficPolicy", route)["spec"]["requestBuffer"] == {"limit": f"{size[1]}Mi"}


def test_security_headers_are_nginx_headers_on_every_https_response() -> None:
    conf = nginx_conf()
    https = conf[conf.index("ssl default_server") :]
    server_block = https[: https.index("\n        location ")]
    nginx = dict(re.findall(r'add_header ([\w-]+) "([^"]+)" always;', server_block))
    spec = one("ClientTrafficPolicy", "gateway")["spec"]
    assert {h["name"]: h["value"] for h in spec["headers"]["lateResponseHeaders"]["set"]} == nginx
    assert spec["targetRefs"][0]["sectionName"] == "https"
    assert spec["tls"]["minVersion"] == "1.2"
    assert ":".join(spec["tls"]["ciphers"]) in conf


def test_build_assets_are_cached_as_immutable_and_everything_else_goes_to_the_app() -> None:
    static, rest = rules_of("app")
    assert static["matches"][0]["path"]["value"] == "/_next/static"
    modifier = static["filters"][0]["responseHeaderModifier"]["set"][0]
    assert modifier == {"name": "Cache-Control", "value": f"public, max-age={365 * 86400}, immutable"}
    assert rest["matches"][0]["path"]["value"] == "/" and "filters" not in rest
    assert all(rule["backendRefs"] == [{"name": "app", "port": 3000}] for rule in (static, rest))


def test_served_directories_go_to_the_static_server_with_their_cache_rules() -> None:
    served = {each.url_path.rstrip("/"): each.max_age_seconds for each in served_data_dirs(SETTINGS)}
    assert "/books" in served and "/exports" not in str(one("HTTPRoute", FILES))
    rules = rules_of(FILES)
    assert {rule["matches"][0]["path"]["value"] for rule in rules} == set(served)
    for rule in rules:
        value = rule["filters"][0]["responseHeaderModifier"]["set"][0]["value"]
        assert value == f"public, max-age={served[rule['matches'][0]['path']['value']]}"
        assert rule["backendRefs"] == [{"name": FILES, "port": FILES_PORT}]


def test_the_static_server_serves_each_directory_from_its_read_only_claim() -> None:
    conf = one("ConfigMap", "files-config")["data"]["nginx.conf"]
    pod = one("Deployment", FILES)["spec"]["template"]["spec"]
    claims = {v["name"]: v["persistentVolumeClaim"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    for each in served_data_dirs(SETTINGS):
        assert f"location ^~ {each.url_path} {{\n            alias /data/{each.name}/;" in conf
        assert claims[f"data-{each.name}"] == {"claimName": f"app-{each.name}", "readOnly": True}
        assert mounts[f"data-{each.name}"]["readOnly"] is True
    assert "exports" not in conf and pod["securityContext"]["fsGroup"] == 1001  # the app's group, unchanged


def test_the_gateway_reaches_the_static_server_and_the_acme_solver_only() -> None:
    envoy = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}}}
    files = one("NetworkPolicy", FILES)["spec"]
    assert files["ingress"] == [{"from": [envoy], "ports": [{"protocol": "TCP", "port": FILES_PORT}]}]
    assert "egress" not in files
    solver = one("NetworkPolicy", "acme-solver")["spec"]
    assert solver["podSelector"]["matchLabels"] == {"acme.cert-manager.io/http01-solver": "true"}


def test_the_files_server_config_has_no_directory_without_a_url_path() -> None:
    no_served = k8s_with(data_dirs=[{"name": "uploads", "path": "/app/uploads"}])
    assert "location ^~" not in render_files_server(no_served, FILES_PORT, "/data", "/tmp", "/healthz")
    assert [
        r["spec"]["rules"] for r in gateway.http_routes(no_served, "stories") if r["metadata"]["name"] == FILES
    ] == []
