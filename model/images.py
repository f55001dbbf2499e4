"""Image references: every image is pinned, by an explicit version tag, a digest, or both. The version
is read from the tag so that configuration keys that differ between server versions can be rendered for
the pinned one."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A registry port (`host:5000/`) is told from a tag by the slash after it.
_REFERENCE = re.compile(
    r"^(?P<repository>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::\d+(?=/))?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_VERSION = re.compile(r"^v?(?P<numbers>\d+(?:\.\d+)*)")


@dataclass(frozen=True)
class ImageRef:
    """`version` is the tag's leading numbers; empty for a reference by digest alone."""

    repository: str
    tag: str | None
    digest: str | None
    version: tuple[int, ...]

    @property
    def major(self) -> int:
        return self.version[0]


def parse_image(reference: str) -> ImageRef:
    """Parse `repository:tag`, `repository:tag@sha256:digest` or `repository@sha256:digest`. A tag must
    start with a version number: a floating tag (latest, stable, alpine, bookworm) moves, even beside a
    digest it misleads. A digest alone is the strongest pin there is, but says no version."""
    match = _REFERENCE.match(reference)
    if not match or not (match["tag"] or match["digest"]):
        raise ValueError("must be repository:tag with an explicit version tag (for example postgres:15.13)")
    tag = match["tag"]
    version = _VERSION.match(tag) if tag else None
    if tag and not version:
        raise ValueError(f"tag {tag!r} is not a version; pin an explicit version instead of a floating tag")
    numbers = tuple(int(part) for part in version["numbers"].split(".")) if version else ()
    return ImageRef(match["repository"], tag, match["digest"], numbers)


# Directories the images have where the stack mounts a writable named volume, with their owner's uid:
# Docker gives a new named volume the owner and mode of the image's directory, and a directory the image
# does not have yields a volume root-owned 0755 that a non-root service cannot write. Read from the
# images' Dockerfiles (postgres: docker-library/postgres; redis: docker-library/redis; prom/prometheus,
# prom/alertmanager, grafana/grafana; the app's Dockerfile; backup/Dockerfile for the backup volume).
POSTGRES_IMAGE_DIRECTORIES = {
    "/var/lib/postgresql/data": 999,
    "/var/run/postgresql": 999,
    "/var/lib/stories-backup": 999,  # backup/Dockerfile creates it (the image the stack builds)
}
IMAGE_DIRECTORIES: dict[str, dict[str, int]] = {
    "postgres": POSTGRES_IMAGE_DIRECTORIES,
    "backup": POSTGRES_IMAGE_DIRECTORIES,
    "redis": {"/data": 999},
    "prometheus": {"/prometheus": 65534},
    "alertmanager": {"/alertmanager": 65534},
    "grafana": {"/var/lib/grafana": 472},
    # The app's runner stage creates these owned 1001:1001 (nextjs:nodejs), mode 775. It has no
    # public/avatars and no private/exports: the platform gives those volumes their owner (components/app.py).
    "app": {
        "/app/uploads": 1001,
        "/app/tmp": 1001,
        "/app/public/books": 1001,
        "/app/public/covers": 1001,
        "/app/public/generated-images": 1001,
    },
}
