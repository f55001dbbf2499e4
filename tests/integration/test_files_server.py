"""The Kubernetes target's static server of the data directories: real nginx with the rendered config serves
each served directory's files, nothing else, and no listing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from configs.kubernetes.files import HEALTH_PATH
from configs.render import render_files_server, served_data_dirs
from harness.servers import Server, free_port, service_user, write
from harness.services import Environment
from tools.plan import settings_for

pytestmark = pytest.mark.integration
SETTINGS = settings_for("k8s")


@pytest.fixture(scope="module")
def files_server(environment: Environment) -> Iterator[tuple[str, Path]]:
    base = environment.base / "k8s-files"
    data = base / "data"
    for each in SETTINGS.app.data_dirs:
        (data / each.name).mkdir(parents=True, exist_ok=True)
    port = free_port()
    scratch = base / "scratch"
    scratch.mkdir(exist_ok=True)
    conf = write(base / "nginx.conf", render_files_server(SETTINGS, port, str(data), str(scratch), HEALTH_PATH))
    log = write(base / "nginx.log", "")  # nginx reopens /dev/stderr, this file, as its user
    user = service_user("www-data")
    user.own(base)
    server = Server("files", ["nginx", "-c", str(conf), "-g", "daemon off;"], user, log).start()
    try:
        server.wait_for_port(port)
        yield f"http://127.0.0.1:{port}", data
    finally:
        server.stop()


def test_each_served_directory_is_served_and_nothing_else(files_server: tuple[str, Path]) -> None:
    url, data = files_server
    for each in served_data_dirs(SETTINGS):
        write(data / each.name / "a.pdf", f"file of {each.name}\n")
        answer = requests.get(f"{url}{each.url_path}a.pdf", timeout=5)
        assert (answer.status_code, answer.text) == (200, f"file of {each.name}\n")
        assert requests.get(f"{url}{each.url_path}", timeout=5).status_code in (403, 404)  # no listing
    write(data / "exports" / "a.pdf", "personal data\n")
    assert requests.get(f"{url}/exports/a.pdf", timeout=5).status_code == 404
    assert requests.get(f"{url}/", timeout=5).status_code == 404
    assert requests.get(f"{url}{HEALTH_PATH}", timeout=5).text == "ok\n"
