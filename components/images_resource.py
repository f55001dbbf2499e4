"""Images: pulling pinned ones, and building this repository's own with a tag derived from their sources."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pulumi
import pulumi_docker as docker

ROOT = Path(__file__).resolve().parent.parent


def pull(name: str, reference: str, parent: pulumi.Resource) -> pulumi.Output[str]:
    """Pull `reference` and return its image id: passing the id (not the name) to a container avoids
    a perpetual diff in pulumi-docker."""
    image = docker.RemoteImage(
        f"{name}-image", name=reference, keep_locally=True, opts=pulumi.ResourceOptions(parent=parent)
    )
    image_id: pulumi.Output[str] = image.image_id
    return image_id


def source_tag(sources: Sequence[str], build_args: dict[str, str] | None = None) -> str:
    """A version tag from an image's sources and build arguments: a new tag, and a rebuild, exactly
    when one of them changes."""
    digest = hashlib.sha256()
    for name in sources:
        digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes())
    for key, value in sorted((build_args or {}).items()):
        digest.update(f"{key}={value}".encode())
    return f"1.0.0-{digest.hexdigest()[:12]}"


def build_local(
    name: str,
    repository: str,
    dockerfile: str,
    sources: Sequence[str],
    parent: pulumi.Resource,
    build_args: dict[str, str] | None = None,
) -> tuple[pulumi.Output[str], str]:
    """Build an image of this repository on the stack's Docker host (context: the project directory,
    relative, so that previews do not differ between checkouts). Returns (image name, pinned reference)."""
    reference = f"{repository}:{source_tag([dockerfile, *sources], build_args)}"
    image = docker.Image(
        f"{name}-image",
        image_name=reference,
        build=docker.DockerBuildArgs(
            context=".",
            dockerfile=dockerfile,
            args=build_args,
            builder_version=docker.BuilderVersion.BUILDER_BUILD_KIT,
            platform="linux/amd64",
        ),
        skip_push=True,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    built: pulumi.Output[str] = image.image_name
    return built, reference
