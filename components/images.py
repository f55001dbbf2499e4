"""Image references: every image is pinned to an explicit version tag, and the version is read from it
so that configuration keys that differ between server versions can be rendered for the pinned one."""

from __future__ import annotations

import re
from dataclasses import dataclass

_REFERENCE = re.compile(
    r"^(?P<repository>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::\d+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})(?:@sha256:[a-f0-9]{64})?$"
)
_VERSION = re.compile(r"^v?(?P<numbers>\d+(?:\.\d+)*)")


@dataclass(frozen=True)
class ImageRef:
    repository: str
    tag: str
    version: tuple[int, ...]

    @property
    def major(self) -> int:
        return self.version[0]


def parse_image(reference: str) -> ImageRef:
    """Parse `repository:tag[@sha256:digest]`; the tag must start with a version number."""
    match = _REFERENCE.match(reference)
    if not match:
        raise ValueError("must be repository:tag with an explicit version tag (for example postgres:15.13)")
    tag = match["tag"]
    version = _VERSION.match(tag)
    if not version:
        raise ValueError(f"tag {tag!r} is not a version; pin an explicit version instead of a floating tag")
    return ImageRef(match["repository"], tag, tuple(int(part) for part in version["numbers"].split(".")))
