"""Renovate keeps every pin current: its regex managers find every image the settings and the stack files
pin (so a new service cannot slip past it), and its own validator accepts the configuration."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from configs.kubernetes.cron import CURL_IMAGE
from configs.kubernetes.operators import charts
from model.images import parse_image
from model.settings import Images, KubernetesSettings, Operators
from tests.crds import cloudnative_pg, envoy_gateway
from tools.plan import STACKS, settings_for

ROOT = Path(__file__).resolve().parents[2]
CONFIG = json.loads((ROOT / "renovate.json").read_text())
# .ci/run installs Renovate's own validator here (npm, version pinned in .ci/run).
DEV = "requirements-dev.txt"
VALIDATOR = Path("/var/cache/stories-renovate/node_modules/.bin/renovate-config-validator")


def match_strings(path: str, datasource: str | None = "docker") -> list[str]:
    """The regexes of the custom manager whose fileMatch takes `path` (exactly one): the images' (a docker
    datasource template), or with `datasource=None` the one whose matches name their datasource (the charts')."""
    (manager,) = [
        m
        for m in CONFIG["customManagers"]
        if any(re.search(p, path) for p in m["fileMatch"]) and m.get("datasourceTemplate") == datasource
    ]
    return [str(pattern) for pattern in manager["matchStrings"]]


def matches(path: str, datasource: str | None = "docker") -> list[re.Match[str]]:
    """What Renovate's regex manager finds in a file (JavaScript named groups `(?<name>` written the Python way)."""
    text = (ROOT / path).read_text()
    patterns = [pattern.replace("(?<", "(?P<") for pattern in match_strings(path, datasource)]
    return [match for pattern in patterns for match in re.finditer(pattern, text)]


def found(path: str) -> set[str]:
    """The `depName:currentValue` pins Renovate's image manager finds in a file."""
    return {f"{match['depName']}:{match['currentValue']}" for match in matches(path)}


def test_every_operator_chart_is_found_with_the_repository_it_is_installed_from() -> None:
    """The comment above each chart version names the chart operators.py installs, from the same place."""
    found_charts = {match["depName"]: match for match in matches("model/settings.py", None)}
    every = charts(settings_for("k8s"))
    assert len(found_charts) == len(every) == len(Operators.model_fields)
    for chart in every:
        if chart.repository is None:  # an OCI chart: Renovate's docker datasource, by the reference
            match = found_charts[chart.chart.removeprefix("oci://")]
            assert match["datasource"] == "docker" and match["registryUrl"] is None
        else:
            match = found_charts[chart.chart]
            assert (match["datasource"], match["registryUrl"]) == ("helm", chart.repository)
        assert match["currentValue"] == chart.settings.version


def test_the_crd_models_follow_the_charts() -> None:
    """A chart update moves the CRDs the custom resources are checked against: cloudcoil's models are
    versioned as the operator's release (KEDA's chart version is its release; cert-manager's too), and the
    hand-written models cite the version they were checked against."""
    operators = KubernetesSettings().operators
    assert pinned_requirement("cloudcoil-models-keda", DEV) == f"{operators.keda.version}.0"
    assert pinned_requirement("cloudcoil-models-cert-manager", DEV) == f"{operators.cert_manager.version[1:]}.0"
    assert f"chart {operators.cloudnative_pg.version}" in " ".join((cloudnative_pg.__doc__ or "").split())
    assert f"Envoy Gateway {operators.envoy_gateway.version}" in (envoy_gateway.__doc__ or "")


def test_every_default_image_is_found_in_the_settings_module() -> None:
    kubernetes = KubernetesSettings()
    expected = {str(value) for _, value in Images()} | {kubernetes.postgres_image, kubernetes.restic_image}
    assert found("model/settings.py") == expected


def test_the_kubernetes_curl_image_is_pinned_and_found() -> None:
    """The app's scheduled calls' curl (configs/kubernetes/cron.py, outside the settings: see there)."""
    parse_image(CURL_IMAGE)  # refuses an unpinned or floating reference, as the settings do
    assert found("configs/kubernetes/cron.py") == {CURL_IMAGE}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_image_of_a_stack_file_is_found(stack: str) -> None:
    settings = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]["1001-stories:settings"]
    images = set((settings.get("images") or {}).values())
    if "image" in settings["app"]:
        images.add(settings["app"]["image"])
    if "image" in settings["app"].get("migration", {}):  # the migration's image (app.migration.image)
        images.add(settings["app"]["migration"]["image"])
    assert found(f"Pulumi.{stack}.yaml") == images


def test_every_service_image_key_is_watched_in_the_stack_files() -> None:
    """A service added to the settings' images must be added to the stack files' regex too."""
    (pattern,) = match_strings("Pulumi.prod.yaml")
    for field in Images.model_fields.values():
        assert f"|{field.alias}|" in pattern or f"|{field.alias})" in pattern, field.alias


def test_the_e2e_stack_is_left_alone() -> None:
    """Its images are local stand-ins built from Debian's packages (README: The e2e layer)."""
    assert not any(re.search(p, "Pulumi.e2e.yaml") for m in CONFIG["customManagers"] for p in m["fileMatch"])


def test_postgres_stays_on_its_major() -> None:
    (rule,) = [r for r in CONFIG["packageRules"] if r.get("matchPackageNames") == ["postgres"]]
    assert rule["allowedVersions"] == "<16"


def pinned_requirement(name: str, requirements: str = "requirements.txt") -> str:
    (line,) = [line for line in (ROOT / requirements).read_text().splitlines() if line.startswith(f"{name}==")]
    return line.removeprefix(f"{name}==")


@pytest.mark.parametrize("stack", STACKS)
def test_grafanas_sdk_is_the_release_line_of_the_stacks_grafana(stack: str) -> None:
    """The dashboards are built with the SDK generated for one Grafana minor (BUILD!X.Y.Z), and Renovate
    may move it only within that line: a new Grafana minor means moving the image and the SDK together."""
    sdk = pinned_requirement("grafana-foundation-sdk")
    _, line = sdk.split("!")
    grafana = settings_for(stack).images.ref("grafana").version
    assert tuple(int(part) for part in line.split(".")[:2]) == grafana[:2], (sdk, grafana)
    (rule,) = [r for r in CONFIG["packageRules"] if r.get("matchPackageNames") == ["grafana-foundation-sdk"]]
    allowed = re.compile(rule["allowedVersions"].strip("/"))
    assert allowed.match(sdk)
    assert not allowed.match(f"9999999999!{grafana[0]}.{grafana[1] + 1}.0")


@pytest.mark.integration
def test_renovates_own_validator_accepts_the_configuration() -> None:
    node = shutil.which("node")
    assert node and VALIDATOR.exists(), f"install Renovate's validator: see .ci/run ({VALIDATOR})"
    result = subprocess.run(
        [str(VALIDATOR), "--strict", "renovate.json"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "Config validated successfully" in result.stdout, result.stdout + result.stderr
