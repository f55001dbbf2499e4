"""The images of the e2e stack, built on this machine from Debian bookworm's packages. Nothing is pulled.

    python -m e2e.images [--stack e2e]

1. The base: a Debian root filesystem (e2e/images/base/: debootstrap's minbase, then apt-get in a
   chroot), kept as a tarball under /var/cache/stories-e2e/ and imported as `stories-e2e/base:<hash>`,
   the hash of the suite and of that directory (the package list and the build script).
2. A thin image per service from `e2e/images/<service>/Dockerfile` (`ARG BASE`), tagged with the
   reference the stack's settings name once the Debian package's version is the tag's; the images of
   the outside world (S3, ACME); the app's stand-in when `e2e/images/app/` exists.
3. The images the Pulumi program builds itself (`docker:index/image:Image` in the plan), from the
   project's Dockerfiles. Their `pip install` takes wheels that the host fetched: a container here
   reaches the package index only through a TLS-intercepting proxy whose CA only the host trusts
   (`offline_pip`). Their base images come from here too (`python:*`: e2e/images/python/).

An image whose inputs (the images it starts from, its build context and arguments) are unchanged is
reused: a label on it holds their hash. e2e/images/README.md lists what each stand-in keeps of the image
it stands in for, and how it differs.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import docker
from docker.errors import APIError, BuildError, DockerException, ImageNotFound
from docker.models.images import Image

from model.images import parse_image
from model.loading import ConfigError
from model.settings import Settings
from tools.plan import run_plan, settings_for

ROOT = Path(__file__).resolve().parent.parent
RECIPES = Path(__file__).resolve().parent / "images"
BASE_RECIPE = RECIPES / "base"
CACHE = Path("/var/cache/stories-e2e")
SUITE = "bookworm"
BASE_REPOSITORY = "stories-e2e/base"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
BASE_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INPUTS_LABEL = "org.1001stories.e2e.inputs"
VERSIONS_LABEL = "org.1001stories.e2e.debian-versions"
IMAGE_RESOURCE = "docker:index/image:Image"
WHEELS = "wheels"  # the directory of pre-fetched wheels inside a build context
S3_PACKAGE = "moto"  # its pin in requirements-dev.txt is the S3 stand-in's version


@dataclass(frozen=True)
class StandIn:
    """A recipe under e2e/images/ and the Debian package whose upstream version its tag carries."""

    recipe: str
    package: str
    compared_parts: int | None = None  # how many of the tag's version numbers must match; None: all


# settings.images key -> its stand-in. Grafana and cAdvisor have no Debian package (the e2e stack
# turns them off).
STAND_INS: dict[str, StandIn] = {
    "postgres": StandIn("postgres", "postgresql-15"),
    "pgbouncer": StandIn("pgbouncer", "pgbouncer"),
    "redis": StandIn("redis", "redis-server"),
    "nginx": StandIn("nginx", "nginx"),
    "certbot": StandIn("certbot", "certbot"),
    "prometheus": StandIn("prometheus", "prometheus"),
    "alertmanager": StandIn("alertmanager", "prometheus-alertmanager"),
    "node_exporter": StandIn("node-exporter", "prometheus-node-exporter"),
    "postgres_exporter": StandIn("postgres-exporter", "prometheus-postgres-exporter"),
    "pgbouncer_exporter": StandIn("pgbouncer-exporter", "prometheus-pgbouncer-exporter"),
    "redis_exporter": StandIn("redis-exporter", "prometheus-redis-exporter"),
    "nginx_exporter": StandIn("nginx-exporter", "prometheus-nginx-exporter"),
    "blackbox_exporter": StandIn("blackbox-exporter", "prometheus-blackbox-exporter"),
    "socket_proxy": StandIn("socket-proxy", "nginx"),
}
# Repositories the project's Dockerfiles start FROM -> their stand-in (the tag comes from the FROM line;
# Debian's Python is 3.11.2 where the tag says 3.11.11, so only major.minor are compared).
FROM_STAND_INS: dict[str, StandIn] = {"python": StandIn("python", "python3", compared_parts=2)}


class ImageBuildError(Exception):
    """An image of the e2e stack cannot be built; the message says which and why."""


@dataclass(frozen=True)
class ContextFile:
    content: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class Recipe:
    """One image to build: its build context, the Dockerfile in it, its arguments, the images it starts
    FROM, and the network its RUN steps get ("none" unless they fetch something)."""

    reference: str
    context: Mapping[str, ContextFile]
    froms: tuple[str, ...]
    buildargs: Mapping[str, str] = field(default_factory=dict)
    dockerfile: str = "Dockerfile"
    network: str = "none"


# ---------------------------------------------------------------------------------------------------
# Small pure helpers


def digest(*parts: bytes) -> str:
    hashed = hashlib.sha256()
    for part in parts:
        hashed.update(len(part).to_bytes(8, "big") + part)
    return hashed.hexdigest()[:16]


def upstream_version(debian_version: str) -> tuple[int, ...]:
    """The leading numbers of a Debian version's upstream part: 5:7.0.15-1~deb12u10 -> (7, 0, 15)."""
    upstream = debian_version.split(":", 1)[-1].rsplit("-", 1)[0]
    numbers = re.match(r"\d+(?:\.\d+)*", upstream)
    if numbers is None:
        raise ImageBuildError(f"Debian version {debian_version!r} does not start with a number")
    return tuple(int(part) for part in numbers.group().split("."))


def dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def check_version(reference: str, stand_in: StandIn, versions: Mapping[str, str]) -> None:
    """The tag's version numbers must be the Debian package's: the renderers write files for the tag."""
    try:
        tag = parse_image(reference).version
    except ValueError as error:
        raise ImageBuildError(f"{reference}: {error}") from None
    parts = stand_in.compared_parts or len(tag)
    found = versions.get(stand_in.package)
    if found is None:
        raise ImageBuildError(f"{reference}: the base image has no package {stand_in.package}")
    if upstream_version(found)[:parts] != tag[:parts]:
        raise ImageBuildError(
            f"{reference}: the tag says {stand_in.package} {dotted(tag[:parts])}, but Debian {SUITE} now has "
            f"{found}; set the tag to {dotted(upstream_version(found)[:parts])} in the stack's settings (the "
            "renderers write the configuration for the tag's version)"
        )


def context_file(path: Path) -> ContextFile:
    return ContextFile(path.read_bytes(), 0o755 if os.access(path, os.X_OK) else 0o644)


def directory_files(directory: Path) -> dict[str, ContextFile]:
    """Every file under `directory` by its path relative to it (executables stay executable)."""
    return {
        path.relative_to(directory).as_posix(): context_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def context_archive(context: Mapping[str, ContextFile]) -> io.BytesIO:
    """The build context as a tar archive, root-owned, with fixed times (the same inputs, the same bytes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, item in sorted(context.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(item.content), item.mode
            archive.addfile(info, io.BytesIO(item.content))
    buffer.seek(0)
    return buffer


def instructions(dockerfile: str) -> Iterator[tuple[str, list[str]]]:
    """(INSTRUCTION, words) of a Dockerfile: comment lines left out, continuation lines joined."""
    lines = [line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")]
    for line in "\n".join(lines).replace("\\\n", " ").splitlines():
        words = line.split()
        if words:
            yield words[0].upper(), words[1:]


def from_images(dockerfile: str, buildargs: Mapping[str, str]) -> tuple[str, ...]:
    """The images a Dockerfile starts FROM, its ARGs substituted (build stages left out)."""
    arguments: dict[str, str] = {}
    images: list[str] = []
    stages: set[str] = set()
    for keyword, words in instructions(dockerfile):
        if keyword == "ARG" and not images:
            name, _, default = words[0].partition("=")
            arguments[name] = buildargs.get(name, default)
        elif keyword == "FROM":
            words = [word for word in words if not word.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda match: arguments.get(match[1], ""), words[0])
            if image not in stages:
                images.append(image)
            if len(words) == 3 and words[1].upper() == "AS":
                stages.add(words[2])
    return tuple(images)


def copied_files(dockerfile: str, context_dir: Path) -> dict[str, ContextFile]:
    """The files of the context that the Dockerfile's COPY lines read (only those are sent)."""
    files: dict[str, ContextFile] = {}
    for keyword, words in instructions(dockerfile):
        if keyword != "COPY" or any(word.startswith("--from") for word in words):
            continue
        for source in [word for word in words if not word.startswith("--")][:-1]:
            path = context_dir / source
            if path.is_dir():
                files.update({f"{source.rstrip('/')}/{name}": item for name, item in directory_files(path).items()})
            elif path.is_file():
                files[source] = context_file(path)
            else:
                raise ImageBuildError(f"{context_dir}: COPY {source}: no such file")
    return files


_REQUIREMENTS_COPY = re.compile(r"^COPY (?P<source>\S+) /tmp/requirements\.txt$", re.MULTILINE)


def offline_pip(dockerfile: str, name: str) -> tuple[str, str | None]:
    """The Dockerfile with its `pip install` taking the wheels copied into the build (/tmp/wheels)
    instead of the package index, and the requirements file it installs; unchanged without pip.

    The differences from the project's Dockerfile: one more COPY (the wheels, a layer of their size),
    `--no-index --find-links /tmp/wheels` after `pip install`, and /tmp/wheels removed with the
    requirements file."""
    if "pip install" not in dockerfile:
        return dockerfile, None
    copies = list(_REQUIREMENTS_COPY.finditer(dockerfile))
    if len(copies) != 1 or dockerfile.count("pip install ") != 1 or dockerfile.count("rm /tmp/requirements.txt") != 1:
        raise ImageBuildError(
            f"{name}: e2e/images.py builds it from pre-fetched wheels and expects one `COPY <file> "
            "/tmp/requirements.txt`, one `pip install ... -r /tmp/requirements.txt` and one "
            "`rm /tmp/requirements.txt`; teach offline_pip the Dockerfile's new shape"
        )
    end = copies[0].end()
    variant = f"{dockerfile[:end]}\nCOPY {WHEELS} /tmp/wheels{dockerfile[end:]}"
    variant = variant.replace("pip install ", "pip install --no-index --find-links /tmp/wheels ")
    variant = variant.replace("rm /tmp/requirements.txt", "rm -r /tmp/requirements.txt /tmp/wheels")
    return variant, copies[0]["source"]


def pinned_requirement(requirements: Path, package: str) -> str:
    """The `package[extras]==version` line of a requirements file."""
    for line in requirements.read_text().splitlines():
        if re.match(rf"{re.escape(package)}(\[[^\]]*\])?==", line.strip()):
            return line.strip()
    raise ImageBuildError(f"{requirements}: no `{package}==<version>` line")


# ---------------------------------------------------------------------------------------------------
# The host's apt sources: the mirror the base comes from (never written into this project)


@dataclass(frozen=True)
class AptSource:
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]

    def deb822(self) -> str:
        """The stanza for the image, signed by the Debian archive keyring that debootstrap installs."""
        return (
            f"Types: deb\nURIs: {' '.join(self.uris)}\nSuites: {' '.join(self.suites)}\n"
            f"Components: {' '.join(self.components)}\nSigned-By: {DEBIAN_KEYRING}\n"
        )


# The values apt reads as false (StringToBool in apt-pkg/contrib/strutl.cc, compared in any case).
APT_FALSE = frozenset({"0", "no", "false", "without", "off", "disable"})


def deb822_sources(text: str) -> Iterator[AptSource]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            name, colon, value = line.partition(":")
            if line.startswith((" ", "\t")):  # a continuation line: more of the field's value
                if key:
                    fields[key] += f" {line.strip()}"
            elif colon and not line.startswith("#"):
                key = name.strip().lower()
                fields[key] = value.strip()
        enabled = fields.get("enabled", "yes").lower() not in APT_FALSE
        if "deb" in fields.get("types", "").split() and enabled:
            yield AptSource(
                tuple(fields.get("uris", "").split()),
                tuple(fields.get("suites", "").split()),
                tuple(fields.get("components", "").split()),
            )


def one_line_sources(text: str) -> Iterator[AptSource]:
    for line in text.splitlines():
        words = re.sub(r"\[[^\]]*\]", "", line).split()  # without [options]
        if len(words) >= 4 and words[0] == "deb":
            yield AptSource((words[1],), (words[2],), tuple(words[3:]))


def debian_sources(apt_dir: Path = Path("/etc/apt")) -> list[AptSource]:
    """The host's sources of the Debian suite, its updates and its security archive (main)."""
    suites = {SUITE, f"{SUITE}-updates", f"{SUITE}-security"}
    found: list[AptSource] = []
    for path in sorted(apt_dir.glob("sources.list.d/*.sources")):
        found += deb822_sources(path.read_text())
    for path in [apt_dir / "sources.list", *sorted(apt_dir.glob("sources.list.d/*.list"))]:
        if path.exists():
            found += one_line_sources(path.read_text())
    debian = [
        AptSource(source.uris, tuple(s for s in source.suites if s in suites), ("main",))
        for source in found
        if "main" in source.components and set(source.suites) & suites and source.uris
    ]
    if not any(SUITE in source.suites for source in debian):
        raise ImageBuildError(f"the host's apt sources under {apt_dir} have no Debian {SUITE} archive (main)")
    return debian


# ---------------------------------------------------------------------------------------------------
# Building


def base_key() -> str:
    """The base's tag: the hash of the suite and of e2e/images/base/ (package list and build script)."""
    recipe = [f"{name}\0".encode() + item.content for name, item in directory_files(BASE_RECIPE).items()]
    return digest(SUITE.encode(), *recipe)


class Builder:
    """Builds the images of one stack on one engine, printing what it built or reused."""

    def __init__(self, client: docker.DockerClient, stack: str) -> None:
        self.client = client
        self.stack = stack
        self.settings: Settings = settings_for(stack)

    # -- the base ------------------------------------------------------------------------------

    @cached_property
    def base(self) -> str:
        """`stories-e2e/base:<hash>`: imported from the cached tarball, built first when there is none."""
        key = base_key()
        reference = f"{BASE_REPOSITORY}:{key}"
        if self._exists(reference):
            self._report("reused", reference, 0.0, "base")
            return reference
        started = time.monotonic()
        tarball, versions = CACHE / f"base-{key}.tar", CACHE / f"base-{key}.versions"
        if not tarball.exists():
            print(f"building the base root filesystem (about a minute; log: {tarball.with_suffix('.log')})", flush=True)
            build_rootfs(tarball, versions)
            self._report("built", str(tarball), time.monotonic() - started, "base root filesystem")
            for stale in CACHE.glob("base-*"):
                if stale.stem != tarball.stem:  # an older recipe's tarball, versions and log
                    stale.unlink()
        imported = time.monotonic()
        label = ",".join(line.replace(" ", "=", 1) for line in versions.read_text().splitlines() if line)
        changes = [f"LABEL {VERSIONS_LABEL}={label}", f"ENV {BASE_ENV}", 'CMD ["bash"]']
        self.client.api.import_image_from_file(str(tarball), repository=BASE_REPOSITORY, tag=key, changes=changes)
        self._report("imported", reference, time.monotonic() - imported, "base")
        for image in self.client.images.list(name=BASE_REPOSITORY):
            if reference not in image.tags:
                self._remove_if_unused(str(image.attrs["Id"]))
        return reference

    @cached_property
    def versions(self) -> dict[str, str]:
        """The Debian versions of the packages the base lists (a label of the base image)."""
        labels = self.client.images.get(self.base).labels or {}
        return dict(item.split("=", 1) for item in labels[VERSIONS_LABEL].split(","))

    # -- one image -----------------------------------------------------------------------------

    def build(self, key: str, recipe: Recipe) -> str:
        """Build `recipe` unless an image with its reference and the same inputs exists."""
        started = time.monotonic()
        inputs = self._inputs_hash(recipe)
        previous = self._image(recipe.reference)
        if previous is not None and (previous.labels or {}).get(INPUTS_LABEL) == inputs:
            self._report("reused", recipe.reference, 0.0, key)
            return recipe.reference
        try:
            self.client.images.build(
                fileobj=context_archive(recipe.context),
                custom_context=True,
                dockerfile=recipe.dockerfile,
                tag=recipe.reference,
                buildargs=dict(recipe.buildargs),
                labels={INPUTS_LABEL: inputs},
                network_mode=recipe.network,
                pull=False,
                rm=True,
                forcerm=True,
            )
        except BuildError as error:
            log = "".join(str(entry.get("stream", "")) for entry in error.build_log)
            tail = "\n".join(log.splitlines()[-25:])
            raise ImageBuildError(f"{recipe.reference}: the build failed: {error.msg}\n{tail}") from None
        self._report("built", recipe.reference, time.monotonic() - started, key)
        if previous is not None:
            self._remove_if_unused(str(previous.attrs["Id"]))
        return recipe.reference

    def _inputs_hash(self, recipe: Recipe) -> str:
        parts = [str(self.client.images.get(image).attrs["Id"]).encode() for image in recipe.froms]
        parts += [f"{name}\0{item.mode:o}\0".encode() + item.content for name, item in sorted(recipe.context.items())]
        parts += [f"{name}={value}".encode() for name, value in sorted(recipe.buildargs.items())]
        return digest(recipe.dockerfile.encode(), recipe.network.encode(), *parts)

    def _image(self, reference: str) -> Image | None:
        try:
            return self.client.images.get(reference)
        except ImageNotFound:
            return None

    def _exists(self, reference: str) -> bool:
        return self._image(reference) is not None

    def _remove_if_unused(self, image_id: str) -> None:
        """Remove an image this build superseded, unless a container or another image still uses it."""
        try:
            self.client.images.remove(image_id)
        except APIError:
            return

    @staticmethod
    def _report(action: str, what: str, seconds: float, key: str) -> None:
        print(f"{action:<9}{what:<52}{seconds:7.1f} s  {key}", flush=True)

    # -- the stand-ins -------------------------------------------------------------------------

    def on_base(
        self,
        key: str,
        reference: str,
        recipe: str,
        context: Mapping[str, ContextFile] | None = None,
        arguments: Mapping[str, str] | None = None,
    ) -> str:
        """Build e2e/images/<recipe> (plus `context`) FROM the base."""
        if not (RECIPES / recipe / "Dockerfile").is_file():
            raise ImageBuildError(f"no recipe for {key}: {RECIPES / recipe}/Dockerfile does not exist")
        files = {**directory_files(RECIPES / recipe), **(context or {})}
        return self.build(key, Recipe(reference, files, (self.base,), {"BASE": self.base, **(arguments or {})}))

    def stand_in(self, key: str, stand_in: StandIn, reference: str) -> str:
        check_version(reference, stand_in, self.versions)
        return self.on_base(key, reference, stand_in.recipe)

    def service(self, key: str) -> str:
        """The stand-in of one service: a settings.images key, "app", "s3" or "pebble"."""
        if key in STAND_INS:
            return self.stand_in(key, STAND_INS[key], str(getattr(self.settings.images, key)))
        if key == "app":
            return self.app()
        if key == "s3":
            return self.s3()
        if key == "pebble":
            return self.pebble()
        raise ImageBuildError(f"no stand-in for {key!r}: one of {', '.join([*STAND_INS, 'app', 's3', 'pebble'])}")

    def app(self) -> str:
        """The app's stand-in (e2e/images/app), tagged as settings.app.image."""
        reference = self.settings.app.image
        if reference is None:
            raise ImageBuildError(f"Pulumi.{self.stack}.yaml: app.image is not set (the stack builds the app itself)")
        return self.on_base("app", reference, "app")

    def s3(self) -> str:
        """`stories-e2e/s3:<moto version>`: moto's S3 server behind nginx (TLS)."""
        requirement = pinned_requirement(ROOT / "requirements-dev.txt", S3_PACKAGE)
        reference = f"stories-e2e/s3:{requirement.split('==', 1)[1]}"
        return self.on_base("s3", reference, "s3", self.wheels(requirement), {"REQUIREMENT": requirement})

    def pebble(self) -> str:
        """`stories-e2e/pebble:<Debian's pebble version>`: the ACME server."""
        return self.on_base(
            "pebble", f"stories-e2e/pebble:{dotted(upstream_version(self.versions['pebble']))}", "pebble"
        )

    # -- the project's own images (the plan's docker:index/image:Image) ------------------------

    def plan_images(self) -> dict[str, str]:
        built: dict[str, str] = {}
        for resource in run_plan(self.stack).of_type(IMAGE_RESOURCE):
            key = resource.name.removesuffix("-image")
            built[key] = self.plan_image(key, resource.inputs)
        return built

    def plan_image(self, key: str, inputs: Mapping[str, object]) -> str:
        build = inputs["build"]
        if not isinstance(build, Mapping):
            raise ImageBuildError(f"{key}: the plan's image has no build settings")
        context_dir = ROOT / str(build.get("context", "."))
        dockerfile_name = str(build.get("dockerfile", "Dockerfile"))
        arguments = {str(name): str(value) for name, value in dict(build.get("args") or {}).items()}
        text = (context_dir / dockerfile_name).read_text()
        froms = from_images(text, arguments)
        for image in froms:
            self.from_image(image, dockerfile_name)
        variant, requirements = offline_pip(text, dockerfile_name)
        context = {**copied_files(text, context_dir), dockerfile_name: ContextFile(variant.encode())}
        if requirements is not None:
            context |= self.wheels((context_dir / requirements).read_text())
        recipe = Recipe(str(inputs["imageName"]), context, froms, arguments, dockerfile_name, network="bridge")
        return self.build(key, recipe)

    def from_image(self, reference: str, dockerfile: str) -> None:
        """A project Dockerfile's FROM image: its stand-in, or an image built before (never pulled)."""
        stand_in = FROM_STAND_INS.get(reference.rsplit(":", 1)[0])
        if stand_in is not None:
            self.stand_in(stand_in.recipe, stand_in, reference)
        elif not self._exists(reference):
            raise ImageBuildError(f"{dockerfile}: FROM {reference}: not on this engine, no stand-in, never pulled")

    def wheels(self, requirements: str) -> dict[str, ContextFile]:
        """Wheels for the requirements, under `wheels/` of a build context: built by the host's pip
        (which reaches the package index) for the image's Python, kept under the cache."""
        image_python = upstream_version(self.versions["python3"])[:2]
        if sys.version_info[:2] != image_python:
            raise ImageBuildError(
                f"the wheels are built by this Python ({dotted(sys.version_info[:2])}) for the images' Python "
                f"{dotted(image_python)}: run with a Python {dotted(image_python)} (the project's .venv)"
            )
        directory = CACHE / "wheels" / digest(requirements.encode())
        if not directory.is_dir():
            fetch_wheels(requirements, directory)
        return {f"{WHEELS}/{path.name}": ContextFile(path.read_bytes()) for path in sorted(directory.glob("*.whl"))}

    # -- everything ----------------------------------------------------------------------------

    def build_all(self) -> dict[str, str]:
        app = ["app"] if (RECIPES / "app").is_dir() and self.settings.app.image is not None else []
        built = {key: self.service(key) for key in [*STAND_INS, *app, "s3", "pebble"]}
        return built | self.plan_images()


def build_rootfs(tarball: Path, versions: Path) -> None:
    """Run e2e/images/base/build-rootfs.sh (as root) into a work directory under the cache; the tarball
    and the package versions appear only when it succeeded. Its output goes to base-<hash>.log."""
    if os.geteuid() != 0:
        raise ImageBuildError("building the base root filesystem takes root (debootstrap, chroot, mount)")
    sources = debian_sources()
    mirror = next(source.uris[0] for source in sources if SUITE in source.suites)
    log = tarball.with_suffix(".log")
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs-", ignore_cleanup_errors=True) as work:
        work_dir = Path(work)
        (work_dir / "debian.sources").write_text("\n".join(source.deb822() for source in sources))
        command = [
            "sh",
            str(BASE_RECIPE / "build-rootfs.sh"),
            str(work_dir / "rootfs"),
            SUITE,
            mirror,
            str(work_dir / "debian.sources"),
            str(BASE_RECIPE / "packages"),
            str(work_dir / "base.tar"),
            str(work_dir / "base.versions"),
        ]
        with log.open("w") as output:
            finished = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False)
        if finished.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            raise ImageBuildError(f"the base root filesystem failed (exit {finished.returncode}; {log}):\n{tail}")
        os.replace(work_dir / "base.versions", versions)
        os.replace(work_dir / "base.tar", tarball)


def fetch_wheels(requirements: str, directory: Path) -> None:
    """`pip wheel` for pinned requirements into `directory` (complete, or absent)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix="partial-") as work:
        listed = Path(work) / "requirements.txt"
        listed.write_text(requirements)
        command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", work, "-r", str(listed)]
        finished = subprocess.run(command, capture_output=True, text=True, check=False)
        if finished.returncode != 0:
            raise ImageBuildError(f"pip wheel for the images failed:\n{finished.stderr[-3000:]}")
        listed.unlink()
        os.replace(work, directory)


# ---------------------------------------------------------------------------------------------------
# Entry points


@contextmanager
def one_builder_at_a_time() -> Iterator[None]:
    """Builds on one machine take turns (tests may start them in parallel): two would build the same
    root filesystem twice and import it twice, and a new base id would rebuild every image."""
    try:
        CACHE.mkdir(parents=True, exist_ok=True)
        lock = (CACHE / "build.lock").open("w")
    except OSError as error:
        raise ImageBuildError(f"the image cache {CACHE} must be writable: {error}") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another build of the e2e images ({lock.name})", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build_all(client: docker.DockerClient, stack: str = "e2e") -> dict[str, str]:
    """Build (or reuse) every image of the stack; returns what was built by key -> reference: the
    settings.images keys with a stand-in, "app" (when e2e/images/app exists), "s3", "pebble", and the
    plan's own images by resource name without "-image" ("postgres-backup", "scaler")."""
    with one_builder_at_a_time():
        return Builder(client, stack).build_all()


def build_service_image(client: docker.DockerClient, service: str, stack: str = "e2e") -> str:
    """Build (or reuse) the stand-in of one service (and the base) and return its reference."""
    with one_builder_at_a_time():
        return Builder(client, stack).service(service)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.images", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="e2e", help="the stack whose images to build (default: e2e)")
    args = parser.parse_args(argv)
    if not (ROOT / f"Pulumi.{args.stack}.yaml").exists():
        print(f"--stack {args.stack}: there is no Pulumi.{args.stack}.yaml", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        client = docker.DockerClient(base_url=settings_for(args.stack).host.docker_host)
        build_all(client, args.stack)
    except (ImageBuildError, ConfigError, DockerException) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
