"""Pulling pinned images, once per reference."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker


def pull(name: str, reference: str, parent: pulumi.Resource) -> pulumi.Output[str]:
    """Pull `reference` and return its image id: passing the id (not the name) to a container avoids
    a perpetual diff in pulumi-docker."""
    image = docker.RemoteImage(
        f"{name}-image", name=reference, keep_locally=True, opts=pulumi.ResourceOptions(parent=parent)
    )
    image_id: pulumi.Output[str] = image.image_id
    return image_id
