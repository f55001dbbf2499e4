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

from model.settings import Images, KubernetesSettings
from tools.plan import STACKS, settings_for

ROOT = Path(__file__).resolve().parents[2]
CONFIG = json.loads((ROOT / "renovate.json").read_text())
# .ci/run installs Renovate's own validator here (npm, version pinned in .ci/run).
VALIDATOR = Path("/var/cache/stories-renovate/node_modules/.bin/renovate-config-validator")


def match_strings(path: str) -> list[str]:
    """The regexes of the custom manager whose fileMatch takes `path` (exactly one)."""
    (manager,) = [m for m in CONFIG["customManagers"] if any(re.search(p, path) for p in m["fileMatch"])]
    return [str(pattern) for pattern in manager["matchStrings"]]


def found(path: str) -> set[str]:
    """The `depName:currentValue` pins Renovate's regex manager finds in a file (JavaScript named groups
    `(?<name>` written the Python way)."""
    text = (ROOT / path).read_text()
    pins = set()
    for pattern in match_strings(path):
        for match in re.finditer(pattern.replace("(?<", "(?P<"), text):
            pins.add(f"{match['depName']}:{match['currentValue']}")
    return pins


def test_every_default_image_is_found_in_the_settings_module() -> None:
    kubernetes = KubernetesSettings()
    expected = {str(value) for _, value in Images()} | {kubernetes.postgres_image, kubernetes.restic_image}
    assert found("model/settings.py") == expected


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


def pinned_requirement(name: str) -> str:
    (line,) = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith(f"{name}==")]
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
