"""The pure helpers of e2e/images.py: Debian versions against image tags, the Dockerfile readers, the
offline rewrite of the project's `pip install`, the host's apt sources and the hashes that decide
whether an image is rebuilt. No Docker engine, no network, no debootstrap."""

from __future__ import annotations

import io
import re
import shutil
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from e2e import images
from e2e.images import (
    DEBIAN_KEYRING,
    FROM_STAND_INS,
    IMAGE_RESOURCE,
    RECIPES,
    STAND_INS,
    SUITE,
    WHEELS,
    AptSource,
    ContextFile,
    ImageBuildError,
    StandIn,
    base_key,
    check_version,
    context_archive,
    copied_files,
    deb822_sources,
    debian_sources,
    digest,
    from_images,
    offline_pip,
    one_line_sources,
    upstream_version,
)
from model.images import parse_image
from model.settings import Images
from tests.conftest import plan_of
from tools.plan import settings_for

ROOT = Path(__file__).resolve().parents[2]
PROJECT_DOCKERFILES = ["backup/Dockerfile", "scaler/Dockerfile", "cron/Dockerfile"]
MIRROR = "http://mirror.invalid/debian"
SECURITY = "http://security.invalid/debian-security"


# ---------------------------------------------------------------------------------------------------
# upstream_version


@pytest.mark.parametrize(
    ("debian_version", "numbers"),
    [
        ("1:15.20-0+deb12u1", (15, 20)),  # epoch and a Debian revision
        ("1.22.1-9+deb12u1", (1, 22, 1)),
        ("2.4.0+ds1-2+b4", (2, 4, 0)),  # repacked upstream (+ds1), binNMU (+b4)
        ("5:7.0.15-1~deb12u10", (7, 0, 15)),
        ("3.11.2-1+b1", (3, 11, 2)),
        ("0.25.0+ds-1~bpo12+1", (0, 25, 0)),
        ("1.18.0", (1, 18, 0)),  # a native package: no revision
        ("2.45", (2, 45)),
        ("1:2.0-rc1-3", (2, 0)),  # a hyphen in the upstream part: the revision is after the last one
        ("2:1.0~beta1-1", (1, 0)),
    ],
)
def test_upstream_version_reads_the_leading_numbers_of_the_upstream_part(
    debian_version: str, numbers: tuple[int, ...]
) -> None:
    assert upstream_version(debian_version) == numbers


@given(
    epoch=st.one_of(st.none(), st.integers(0, 9)),
    numbers=st.lists(st.integers(0, 999), min_size=1, max_size=4),
    suffix=st.sampled_from(["", "+ds1", "+dfsg", "~rc2", "a", "+really1.0", ".final"]),
    revision=st.one_of(st.none(), st.sampled_from(["1", "0+deb12u1", "9+deb12u1", "2+b4", "1~deb12u10"])),
)
def test_upstream_version_ignores_epoch_suffix_and_revision(
    epoch: int | None, numbers: list[int], suffix: str, revision: str | None
) -> None:
    version = ".".join(str(number) for number in numbers) + suffix
    if epoch is not None:
        version = f"{epoch}:{version}"
    if revision is not None:
        version = f"{version}-{revision}"
    assert upstream_version(version) == tuple(numbers)


@pytest.mark.parametrize("debian_version", ["", "abc-1", "1:git20230101-1", "v1.2-1"])
def test_a_debian_version_without_leading_number_is_refused_by_name(debian_version: str) -> None:
    with pytest.raises(ImageBuildError) as raised:
        upstream_version(debian_version)
    assert repr(debian_version) in str(raised.value)


# ---------------------------------------------------------------------------------------------------
# check_version


@pytest.mark.parametrize(
    ("reference", "key", "debian_version"),
    [
        ("stories-e2e/postgres:15", "postgres", "1:15.20-0+deb12u1"),
        ("nginx:1.22", "nginx", "1.22.1-9+deb12u1"),
        ("nginx:1.22.1", "nginx", "1.22.1-9+deb12u1"),
        ("redis:7.0", "redis", "5:7.0.15-1~deb12u1"),
        ("prom/prometheus:v2.42.0", "prometheus", "2.42.0+ds-5+b5"),
        ("stories-e2e/socket-proxy:1.22", "socket_proxy", "1.22.1-9+deb12u1"),
    ],
)
def test_a_tag_with_the_debian_packages_version_passes(reference: str, key: str, debian_version: str) -> None:
    stand_in = STAND_INS[key]
    check_version(reference, stand_in, {stand_in.package: debian_version, "unrelated": "0.1-1"})


def test_only_the_compared_parts_count_for_pythons_tag() -> None:
    python = FROM_STAND_INS["python"]
    assert python.compared_parts == 2
    check_version("python:3.11.11-slim-bookworm", python, {"python3": "3.11.2-1+b1"})
    with pytest.raises(ImageBuildError, match=r"3\.11"):
        check_version("python:3.12.8-slim-bookworm", python, {"python3": "3.11.2-1+b1"})


@pytest.mark.parametrize(
    ("reference", "key", "debian_version", "suggested"),
    [
        ("nginxinc/nginx-unprivileged:1.27.3-alpine", "nginx", "1.22.1-9+deb12u1", "1.22.1"),
        ("nginx:1.22.2", "nginx", "1.22.1-9+deb12u1", "1.22.1"),  # more precise than Debian's, and wrong
        ("nginx:1.23", "nginx", "1.22.1-9+deb12u1", "1.22"),
        ("redis:7.2", "redis", "5:7.0.15-1~deb12u1", "7.0"),
        ("stories-e2e/postgres:16", "postgres", "1:15.20-0+deb12u1", "15"),
    ],
)
def test_a_tag_that_is_not_the_debian_version_names_reference_version_and_rule(
    reference: str, key: str, debian_version: str, suggested: str
) -> None:
    stand_in = STAND_INS[key]
    with pytest.raises(ImageBuildError) as raised:
        check_version(reference, stand_in, {stand_in.package: debian_version})
    message = str(raised.value)
    assert message.startswith(f"{reference}:")
    assert stand_in.package in message
    assert debian_version in message  # the package's version, as Debian spells it
    assert re.search(rf"set the tag to {re.escape(suggested)}\b", message), message  # the rule and the fix


def test_a_package_missing_from_the_base_is_named() -> None:
    with pytest.raises(ImageBuildError) as raised:
        check_version("nginx:1.22", StandIn("nginx", "nginx-light"), {"nginx": "1.22.1-9+deb12u1"})
    assert "nginx:1.22" in str(raised.value) and "nginx-light" in str(raised.value)


def test_a_floating_tag_is_refused_with_the_modules_error() -> None:
    with pytest.raises(ImageBuildError, match="python:slim"):
        check_version("python:slim", FROM_STAND_INS["python"], {"python3": "3.11.2-1+b1"})


def test_every_stand_in_is_a_settings_image_with_a_recipe_and_a_listed_package() -> None:
    listed = {
        line.strip()
        for line in (RECIPES / "base" / "packages").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    assert set(STAND_INS) <= set(Images.model_fields)
    for stand_in in [*STAND_INS.values(), *FROM_STAND_INS.values()]:
        assert (RECIPES / stand_in.recipe / "Dockerfile").is_file(), stand_in
        # The versions label holds only the listed packages: check_version finds nothing else.
        assert stand_in.package in listed, stand_in


# ---------------------------------------------------------------------------------------------------
# from_images


def test_from_images_of_the_project_dockerfiles() -> None:
    backup = (ROOT / "backup/Dockerfile").read_text()
    assert from_images(backup, {"POSTGRES_IMAGE": "stories-e2e/postgres:15"}) == ("stories-e2e/postgres:15",)
    scaler = (ROOT / "scaler/Dockerfile").read_text()
    (image,) = from_images(scaler, {})
    assert f"\nFROM {image}\n" in scaler
    assert parse_image(image).repository in FROM_STAND_INS


def test_from_images_substitutes_pre_stage_args_and_leaves_out_stages() -> None:
    dockerfile = "\n".join(
        [
            "# FROM commented:1",
            "ARG GO=1.21",
            "ARG DISTRO=debian:12",
            "ARG UNUSED",
            "FROM --platform=linux/amd64 golang:${GO} AS build",
            "RUN go build ./...",
            "from build AS test",
            "FROM \\",
            "    $DISTRO",
            "ARG GO=9.9",
            "COPY --from=build /out /out",
        ]
    )
    assert from_images(dockerfile, {}) == ("golang:1.21", "debian:12")
    assert from_images(dockerfile, {"GO": "1.22", "DISTRO": "debian:12-slim"}) == ("golang:1.22", "debian:12-slim")


def test_the_plans_images_start_from_stand_ins_and_build_offline() -> None:
    """What Builder.plan_image reads of the e2e plan, without an engine: every FROM image has a stand-in,
    every pip install can be rewritten, every COPY source is sent."""
    settings = settings_for("e2e")
    stand_in_references = {str(getattr(settings.images, key)) for key in STAND_INS}
    planned = _e2e_image_builds()
    assert planned, "the e2e plan builds no image of its own"
    for dockerfile, arguments in planned:
        text = (ROOT / dockerfile).read_text()
        for image in from_images(text, arguments):
            assert image in stand_in_references or image.rsplit(":", 1)[0] in FROM_STAND_INS, (dockerfile, image)
        _, requirements = offline_pip(text, dockerfile)
        assert requirements is not None and requirements in copied_files(text, ROOT)


def _e2e_image_builds() -> list[tuple[str, dict[str, str]]]:
    builds: list[tuple[str, dict[str, str]]] = []
    for resource in plan_of("e2e").of_type(IMAGE_RESOURCE):
        build = resource.inputs["build"]
        assert isinstance(build, dict) and build.get("context", ".") == "."
        arguments = {str(name): str(value) for name, value in dict(build.get("args") or {}).items()}
        builds.append((str(build["dockerfile"]), arguments))
    return builds


# ---------------------------------------------------------------------------------------------------
# copied_files


def test_copied_files_sends_only_what_copy_reads(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "bin" / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "run.sh").chmod(0o755)
    (tmp_path / "bin" / "other.sh").write_text("not copied\n")
    (tmp_path / "pkg" / "x.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "unlisted.txt").write_text("not copied\n")
    dockerfile = "\n".join(
        [
            "FROM python:3.11",
            "# COPY unlisted.txt /nowhere",
            "COPY a.txt /a.txt",
            "COPY --chown=1:1 bin/run.sh \\",
            "     pkg/ /opt/",
            "COPY --from=build /out/unlisted.txt /out/",
        ]
    )
    (tmp_path / "Dockerfile").write_text(dockerfile)
    files = copied_files(dockerfile, tmp_path)
    assert set(files) == {"a.txt", "bin/run.sh", "pkg/x.py"}
    for name, item in files.items():
        assert item.content == (tmp_path / name).read_bytes()
    assert files["bin/run.sh"].mode == 0o755
    assert files["a.txt"].mode == files["pkg/x.py"].mode == 0o644


def test_copied_files_names_a_missing_source(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError) as raised:
        copied_files("FROM python:3.11\nCOPY missing.txt /tmp/\n", tmp_path)
    assert "missing.txt" in str(raised.value) and str(tmp_path) in str(raised.value)


@pytest.mark.parametrize("dockerfile", PROJECT_DOCKERFILES)
def test_copied_files_of_the_project_dockerfiles_are_the_repository_files(dockerfile: str) -> None:
    files = copied_files((ROOT / dockerfile).read_text(), ROOT)
    assert dockerfile not in files
    assert f"{dockerfile.split('/')[0]}/requirements.txt" in files
    for name, item in files.items():
        assert item.content == (ROOT / name).read_bytes(), name
    # Only what the Dockerfile names (the project's COPY lines name files, not directories).
    text = (ROOT / dockerfile).read_text()
    assert all(re.search(rf"\s{re.escape(name)}\s", text) for name in files), sorted(files)


# ---------------------------------------------------------------------------------------------------
# offline_pip

_PIP = "pip install "
_PIP_OFFLINE = f"pip install --no-index --find-links /tmp/{WHEELS} "
_RM = "rm /tmp/requirements.txt"
_RM_OFFLINE = f"rm -r /tmp/requirements.txt /tmp/{WHEELS}"


def _undo_offline(line: str) -> str:
    """The README's rewrites 2 and 3, backwards."""
    return line.replace(_PIP_OFFLINE, _PIP).replace(_RM_OFFLINE, _RM)


@pytest.mark.parametrize("dockerfile", PROJECT_DOCKERFILES)
def test_offline_pip_makes_the_three_documented_changes_and_nothing_else(dockerfile: str) -> None:
    original = (ROOT / dockerfile).read_text()
    variant, requirements = offline_pip(original, dockerfile)
    assert requirements is not None and (ROOT / requirements).is_file()
    before, after = original.splitlines(), variant.splitlines()

    # 1. one more line, right after the COPY of the requirements file: the wheels.
    copy_line = before.index(f"COPY {requirements} /tmp/requirements.txt")
    assert after[copy_line] == before[copy_line]
    assert after[copy_line + 1] == f"COPY {WHEELS} /tmp/wheels"
    rest = after[: copy_line + 1] + after[copy_line + 2 :]

    # 2. and 3.: the other lines are the original's, or the original's with the documented rewrites.
    assert len(rest) == len(before)
    changed = [(old, new) for old, new in zip(before, rest, strict=True) if old != new]
    assert changed, "nothing rewritten"
    for old, new in changed:
        assert _undo_offline(new) == old, new
    assert sum(new.count(_PIP_OFFLINE) for _, new in changed) == 1
    assert sum(new.count(_RM_OFFLINE) for _, new in changed) == 1

    # No pip install left that could reach the index; the wheels are there before it runs.
    assert variant.count(_PIP) == variant.count(_PIP_OFFLINE) == 1
    pip_line = next(index for index, line in enumerate(after) if _PIP_OFFLINE in line)
    assert copy_line + 1 < pip_line
    # The rewritten file still has the same FROM images.
    assert from_images(variant, {"POSTGRES_IMAGE": "x:1"}) == from_images(original, {"POSTGRES_IMAGE": "x:1"})


def test_offline_pip_leaves_a_dockerfile_without_pip_alone() -> None:
    for dockerfile in sorted(RECIPES.glob("*/Dockerfile")):
        text = dockerfile.read_text()
        if "pip install" not in text:
            assert offline_pip(text, str(dockerfile)) == (text, None)
    plain = "FROM debian:12\nRUN apt-get update && rm /tmp/requirements.txt\n"
    assert offline_pip(plain, "plain") == (plain, None)


@pytest.mark.parametrize(
    "dockerfile",
    [
        # two pip installs
        "FROM python:3.11\nCOPY r.txt /tmp/requirements.txt\nRUN pip install -r /tmp/requirements.txt "
        "&& pip install extra && rm /tmp/requirements.txt\n",
        # the requirements file is never removed
        "FROM python:3.11\nCOPY r.txt /tmp/requirements.txt\nRUN pip install -r /tmp/requirements.txt\n",
        # the requirements file is copied elsewhere
        "FROM python:3.11\nCOPY r.txt /opt/requirements.txt\nRUN pip install -r /opt/requirements.txt "
        "&& rm /tmp/requirements.txt\n",
        # two copies of a requirements file
        "FROM python:3.11\nCOPY a.txt /tmp/requirements.txt\nCOPY b.txt /tmp/requirements.txt\n"
        "RUN pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt\n",
    ],
)
def test_offline_pip_refuses_a_shape_it_does_not_know(dockerfile: str) -> None:
    with pytest.raises(ImageBuildError) as raised:
        offline_pip(dockerfile, "odd/Dockerfile")
    assert str(raised.value).startswith("odd/Dockerfile:")


# ---------------------------------------------------------------------------------------------------
# The host's apt sources

DEB822 = f"""\
# The Debian archive
Types: deb deb-src
URIs: {MIRROR}
Suites: {SUITE} {SUITE}-updates
Components: main contrib non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://sources-only.invalid/debian
Suites: {SUITE}
Components: main

Types: deb
URIs: http://disabled.invalid/debian
Suites: {SUITE}
Components: main
Enabled: no

#Types: deb
#URIs: http://commented.invalid/debian
#Suites: {SUITE}
#Components: main

types: deb
uris: {SECURITY}
suites: {SUITE}-security
components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 URIs: http://inside-a-key.invalid/debian
 .
 placeholder-not-a-key
 -----END PGP PUBLIC KEY BLOCK-----
"""


def test_deb822_sources_reads_enabled_binary_stanzas() -> None:
    assert list(deb822_sources(DEB822)) == [
        AptSource((MIRROR,), (SUITE, f"{SUITE}-updates"), ("main", "contrib", "non-free-firmware")),
        AptSource((SECURITY,), (f"{SUITE}-security",), ("main",)),
    ]


def test_the_stanzas_written_for_the_image_read_back_as_the_same_sources() -> None:
    sources = [
        AptSource((MIRROR, "http://second.invalid/debian"), (SUITE, f"{SUITE}-updates"), ("main",)),
        AptSource((SECURITY,), (f"{SUITE}-security",), ("main",)),
    ]
    written = "\n".join(source.deb822() for source in sources)  # as build_rootfs writes debian.sources
    assert list(deb822_sources(written)) == sources
    assert written.count(f"Signed-By: {DEBIAN_KEYRING}\n") == len(sources)


def test_deb822_values_may_continue_on_the_next_lines() -> None:
    text = f"Types: deb\nURIs:\n {MIRROR}\nSuites: {SUITE}\n {SUITE}-updates\nComponents: main\n"
    assert list(deb822_sources(text)) == [AptSource((MIRROR,), (SUITE, f"{SUITE}-updates"), ("main",))]


@pytest.mark.parametrize("enabled", ["No", "false", "off"])
def test_a_stanza_apt_disables_is_left_out(enabled: str) -> None:
    text = f"Types: deb\nURIs: {MIRROR}\nSuites: {SUITE}\nComponents: main\nEnabled: {enabled}\n"
    assert list(deb822_sources(text)) == []


def test_one_line_sources_reads_deb_lines_without_options() -> None:
    text = f"""\
deb {MIRROR} {SUITE} main contrib
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {MIRROR} {SUITE}-updates main
deb [ arch=amd64 ] {SECURITY} {SUITE}-security main non-free-firmware
deb-src {MIRROR} {SUITE} main
# deb http://commented.invalid/debian {SUITE} main
#deb http://commented.invalid/debian {SUITE} main
deb http://no-components.invalid/debian {SUITE}

"""
    assert list(one_line_sources(text)) == [
        AptSource((MIRROR,), (SUITE,), ("main", "contrib")),
        AptSource((MIRROR,), (f"{SUITE}-updates",), ("main",)),
        AptSource((SECURITY,), (f"{SUITE}-security",), ("main", "non-free-firmware")),
    ]


def _apt_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    for name, text in files.items():
        (apt / name).write_text(text)
    return apt


def test_debian_sources_keeps_the_suites_main_of_every_file_kind(tmp_path: Path) -> None:
    apt = _apt_dir(
        tmp_path,
        {
            "sources.list": f"deb http://list.invalid/debian {SUITE} main contrib\n",
            "sources.list.d/debian.sources": (
                f"Types: deb\nURIs: {MIRROR}\nSuites: {SUITE} {SUITE}-updates {SUITE}-backports trixie\n"
                "Components: main non-free-firmware\n\n"
                f"Types: deb\nURIs: {SECURITY}\nSuites: {SUITE}-security\nComponents: main\n"
            ),
            "sources.list.d/third-party.list": "deb http://vendor.invalid/apt stable main\n",
            "sources.list.d/backports.list": f"deb {MIRROR} {SUITE}-backports main\n",
            "sources.list.d/contrib.list": f"deb http://contrib-only.invalid/debian {SUITE} contrib\n",
            "sources.list.d/old.list.disabled": f"deb http://disabled.invalid/debian {SUITE} main\n",
            "sources.list.d/notes.txt": f"deb http://notes.invalid/debian {SUITE} main\n",
        },
    )
    assert debian_sources(apt) == [
        AptSource((MIRROR,), (SUITE, f"{SUITE}-updates"), ("main",)),
        AptSource((SECURITY,), (f"{SUITE}-security",), ("main",)),
        AptSource(("http://list.invalid/debian",), (SUITE,), ("main",)),
    ]


def test_debian_sources_without_sources_list(tmp_path: Path) -> None:
    apt = _apt_dir(tmp_path, {"sources.list.d/mirror.list": f"deb {MIRROR} {SUITE} main\n"})
    assert debian_sources(apt) == [AptSource((MIRROR,), (SUITE,), ("main",))]


@pytest.mark.parametrize(
    "files",
    [
        {},
        {"sources.list": "deb http://mirror.invalid/debian trixie main\n"},
        {"sources.list": f"deb-src {MIRROR} {SUITE} main\ndeb {SECURITY} {SUITE}-security main\n"},
        {"sources.list": f"deb {MIRROR} {SUITE} contrib non-free\n"},
        {"sources.list.d/debian.sources": f"Types: deb\nSuites: {SUITE}\nComponents: main\n"},  # no URIs
        {"sources.list.d/off.sources": f"Types: deb\nURIs: {MIRROR}\nSuites: {SUITE}\nComponents: main\nEnabled: no\n"},
    ],
)
def test_debian_sources_without_the_suites_archive_says_where_it_looked(tmp_path: Path, files: dict[str, str]) -> None:
    apt = _apt_dir(tmp_path, files)
    with pytest.raises(ImageBuildError) as raised:
        debian_sources(apt)
    assert str(apt) in str(raised.value) and SUITE in str(raised.value)


# ---------------------------------------------------------------------------------------------------
# digest, base_key, context_archive: the same inputs, the same key


def test_digest_is_stable_short_and_separates_its_parts() -> None:
    key = digest(b"bookworm", b"packages\0nginx\n")
    assert key == digest(b"bookworm", b"packages\0nginx\n")
    assert re.fullmatch(r"[0-9a-f]{16}", key)
    assert key != digest(b"bookworm", b"packages\0nginx-light\n")
    # Each part is length-prefixed: moving bytes from one part to the next changes the key.
    assert digest(b"ab", b"c") != digest(b"a", b"bc")
    assert digest(b"a") != digest(b"a", b"")
    assert digest() != digest(b"")


@given(st.lists(st.binary(max_size=8), max_size=4), st.lists(st.binary(max_size=8), max_size=4))
def test_digest_differs_for_different_part_lists(first: list[bytes], second: list[bytes]) -> None:
    assert (digest(*first) == digest(*second)) == (first == second)


@pytest.fixture
def base_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of e2e/images/base/ that base_key reads instead of the real one."""
    copy = tmp_path / "base"
    shutil.copytree(RECIPES / "base", copy)
    monkeypatch.setattr(images, "BASE_RECIPE", copy)
    return copy


def test_base_key_depends_on_the_recipe_not_its_location(base_recipe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = base_key()
    assert key == base_key()
    monkeypatch.setattr(images, "BASE_RECIPE", RECIPES / "base")
    assert base_key() == key  # the real directory, the same content: the same tag


def test_base_key_changes_with_the_package_list(base_recipe: Path) -> None:
    key = base_key()
    packages = base_recipe / "packages"
    listed = packages.read_text()
    packages.write_text(listed + "strace\n")
    changed = base_key()
    assert changed != key
    packages.write_text(listed.replace("\nnginx\n", "\n"))
    assert base_key() not in {key, changed}
    packages.write_text(listed)
    assert base_key() == key


def test_base_key_changes_with_the_script_and_the_suite(base_recipe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = base_key()
    script = base_recipe / "build-rootfs.sh"
    script.write_text(script.read_text() + "# one more line\n")
    assert base_key() != key
    script.write_text((RECIPES / "base" / "build-rootfs.sh").read_text())
    assert base_key() == key
    (base_recipe / "README").write_text("a new file of the recipe\n")
    with_readme = base_key()
    assert with_readme != key
    (base_recipe / "README").rename(base_recipe / "NOTES")  # the same bytes under another name
    assert base_key() not in {key, with_readme}
    (base_recipe / "NOTES").unlink()
    assert base_key() == key
    monkeypatch.setattr(images, "SUITE", "trixie")
    assert base_key() != key


def test_base_key_ignores_bytecode_caches(base_recipe: Path) -> None:
    key = base_key()
    (base_recipe / "__pycache__").mkdir()
    (base_recipe / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert base_key() == key


def test_context_archive_is_the_same_bytes_for_the_same_context() -> None:
    files = {"b/run.sh": ContextFile(b"#!/bin/sh\n", 0o755), "a.txt": ContextFile(b"a\n")}
    archive = context_archive(files).getvalue()
    assert archive == context_archive(dict(reversed(list(files.items())))).getvalue()
    assert archive != context_archive({**files, "a.txt": ContextFile(b"a\n", 0o600)}).getvalue()
    with tarfile.open(fileobj=io.BytesIO(archive)) as opened:
        members = opened.getmembers()
        assert [member.name for member in members] == ["a.txt", "b/run.sh"]
        for member in members:
            extracted = opened.extractfile(member)
            assert extracted is not None and extracted.read() == files[member.name].content
            assert member.mode == files[member.name].mode
            assert (member.uid, member.gid, member.mtime) == (0, 0, 0)
