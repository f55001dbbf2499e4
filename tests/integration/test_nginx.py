"""nginx with the rendered config and start script, in front of two stub app upstreams."""

from __future__ import annotations

import http.client
import os
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from configs.render import image_versions, render_certbot, render_nginx, served_data_dirs
from harness.servers import Server, copy, free_port, make_certificates, service_user, write
from harness.services import Environment
from model.settings import Settings
from model.topology import LoopbackPorts, Topology, container_topology, loopback_topology
from tools.plan import STACKS, settings_for

pytestmark = pytest.mark.integration


class StubApp(BaseHTTPRequestHandler):
    """Stands in for a replica of the Next.js app: says who it is, drains request bodies."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        if length:
            self.rfile.read(length)
        body = (f"replica={self.server.server_port} path={self.path}\n" + "x" * 2048).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815 (the names http.server dispatches to)

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Nginx:
    topo: Topology
    server: Server
    upstreams: list[ThreadingHTTPServer]
    ca: str

    def https(self, path: str) -> str:
        return f"https://127.0.0.1:{self.topo.nginx_https_port}{path}"

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.topo.nginx_http_port}{path}"

    def get(self, url: str, headers: dict[str, str] | None = None) -> requests.Response:
        """GET without following redirects, trusting only the test CA that signed nginx's certificate."""
        return requests.get(url, verify=self.ca, allow_redirects=False, timeout=10, headers=headers)

    def burst(self, url: str, count: int) -> list[int]:
        with requests.Session() as session:
            return [session.get(url, verify=self.ca, timeout=10).status_code for _ in range(count)]


def _stub(port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), StubApp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _loopback(environment: Environment, stack: str, settings: Settings) -> Topology:
    ports = LoopbackPorts(0, 0, 0, free_port(), free_port(), free_port(), (free_port(), free_port()))
    return loopback_topology(settings, environment.base / f"nginx-{stack}-{ports.nginx_http}", ports)


def _lay_out(environment: Environment, stack: str, settings: Settings | None = None) -> tuple[Topology, Path]:
    """Write the rendered files and a test certificate where the topology says; return the start script."""
    settings = settings or settings_for(stack)
    topo = _loopback(environment, stack, settings)
    files = render_nginx(settings, topo, environment.versions)
    write(Path(topo.nginx_config_dir) / "nginx.conf", files["nginx.conf"])
    start = write(Path(topo.nginx_config_dir) / "start.sh", files["start.sh"], 0o755)
    fallback = Path(topo.nginx_fallback_tls_dir)
    copy(environment.certs["server.crt"], fallback / "fullchain.pem", 0o644)
    copy(environment.certs["server.key"], fallback / "privkey.pem", 0o600)
    served = [f"{topo.nginx_data_dir}/{each.name}" for each in served_data_dirs(settings)]
    for directory in (topo.nginx_temp_dir, *served, topo.nginx_acme_dir + "/.well-known/acme-challenge"):
        Path(directory).mkdir(parents=True, exist_ok=True)
    return topo, start


@pytest.mark.parametrize("stack", STACKS)
def test_nginx_t_accepts_every_stack(environment: Environment, stack: str) -> None:
    topo, _ = _lay_out(environment, stack)
    user = service_user("www-data")
    # `nginx -t` needs the certificate at the path the start script links; link it as the script does.
    Path(topo.nginx_tls_dir).mkdir(parents=True, exist_ok=True)
    for name in ("fullchain.pem", "privkey.pem"):
        (Path(topo.nginx_tls_dir) / name).symlink_to(Path(topo.nginx_fallback_tls_dir) / name)
    user.own(Path(topo.nginx_config_dir).parent)
    result = subprocess.run(
        ["nginx", "-t", "-e", topo.nginx_error_log, "-c", f"{topo.nginx_config_dir}/nginx.conf"],
        capture_output=True,
        text=True,
        preexec_fn=user.preexec(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


@pytest.fixture
def nginx(environment: Environment) -> Iterator[Nginx]:
    topo, start = _lay_out(environment, "prod")
    user = service_user("www-data")
    user.own(Path(topo.nginx_config_dir).parent)
    upstreams = [_stub(int(address.rsplit(":", 1)[1])) for address in topo.app_upstreams]
    server = Server("nginx", ["sh", str(start)], user, Path(topo.nginx_temp_dir) / "console.log", new_session=True)
    server.start()
    server.wait_for_port(topo.nginx_https_port)
    yield Nginx(topo, server, upstreams, str(environment.certs["ca.crt"]))
    server.stop_group(signal.SIGQUIT)
    for upstream in upstreams:
        upstream.shutdown()
        upstream.server_close()


def test_http_redirects_to_https_except_health_and_acme(nginx: Nginx) -> None:
    redirect = nginx.get(nginx.http("/books/shelf?page=2"))
    assert redirect.status_code == 301
    assert redirect.headers["Location"] == "https://127.0.0.1/books/shelf?page=2"
    assert nginx.get(nginx.http("/health")).status_code == 200
    token = Path(nginx.topo.nginx_acme_dir) / ".well-known" / "acme-challenge" / "token-123"
    token.write_text("proof\n")
    token.chmod(0o644)
    acme = nginx.get(nginx.http("/.well-known/acme-challenge/token-123"))
    assert acme.status_code == 200 and acme.text == "proof\n"


def test_requests_reach_both_upstreams_and_survive_one_stopping(nginx: Nginx) -> None:
    replicas = {nginx.get(nginx.https(f"/page/{i}")).text.split()[0] for i in range(10)}
    assert len(replicas) == 2
    stopped = nginx.upstreams[0]
    stopped.shutdown()
    stopped.server_close()
    answers = [nginx.get(nginx.https(f"/page/{i}")) for i in range(10)]
    assert all(answer.status_code == 200 for answer in answers)
    assert {answer.text.split()[0] for answer in answers} == {f"replica={nginx.upstreams[1].server_port}"}


def test_rate_limits_answer_429_only_on_the_api(nginx: Nginx) -> None:
    limits = settings_for("prod").proxy.rate_limits
    auth = nginx.burst(nginx.https("/api/auth/signin"), limits.auth_burst + 10)
    assert auth[: limits.auth_burst] == [200] * limits.auth_burst  # the burst is served
    assert 429 in auth
    # Far more requests than the burst, so that even a slow machine sends them faster than the rate refills.
    api = nginx.burst(nginx.https("/api/books"), limits.api_burst + 80)
    assert api.count(429) >= 10
    pages = nginx.burst(nginx.https("/library"), limits.api_burst + 80)
    assert set(pages) == {200}


def test_security_headers_and_gzip(nginx: Nginx) -> None:
    response = nginx.get(nginx.https("/library"), headers={"Accept-Encoding": "gzip"})
    headers = response.headers
    assert headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "SAMEORIGIN"
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert headers["Content-Encoding"] == "gzip"
    assert "Server" not in headers or "nginx/" not in headers["Server"]


def test_large_pdf_is_served_with_cache_headers(nginx: Nginx) -> None:
    prod = settings_for("prod")
    settings, books = prod.proxy, prod.app.data_dir("books")
    assert books is not None and books.url_path == "/books/"
    book = Path(nginx.topo.nginx_data_dir) / "books" / "moon-and-stars.pdf"
    book.write_bytes(b"%PDF-1.7\n" + os.urandom(20 * 1024 * 1024))
    book.chmod(0o644)
    response = nginx.get(nginx.https(f"{books.url_path}moon-and-stars.pdf"))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/pdf"
    assert int(response.headers["Content-Length"]) == book.stat().st_size
    assert response.content == book.read_bytes()
    assert response.headers["Cache-Control"] == f"public, max-age={settings.pdf_cache_days * 86400}"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    partial = nginx.get(nginx.https(f"{books.url_path}moon-and-stars.pdf"), headers={"Range": "bytes=0-8"})
    assert partial.status_code == 206 and partial.content == b"%PDF-1.7\n"
    assets = nginx.get(nginx.https("/_next/static/chunks/app.js"))
    assert "immutable" in assets.headers["Cache-Control"]


def test_files_the_app_writes_are_served_from_their_volumes_and_private_ones_never(nginx: Nginx) -> None:
    """Covers, avatars and generated images, written after the app's build: nginx serves them from their
    volumes with the static-asset cache rules; no directory listing; the exports are not served at all."""
    prod = settings_for("prod")
    served = {each.name: each for each in served_data_dirs(prod)}
    assert set(served) == {"books", "covers", "avatars", "generated-images"}
    for name in ("covers", "avatars", "generated-images"):
        image = Path(nginx.topo.nginx_data_dir) / name / "new-after-the-build.png"
        image.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(4096))
        image.chmod(0o644)
        response = nginx.get(nginx.https(f"{served[name].url_path}new-after-the-build.png"))
        assert response.status_code == 200 and response.content == image.read_bytes(), name
        assert response.headers["Content-Type"] == "image/png"
        assert response.headers["Cache-Control"] == f"public, max-age={prod.proxy.static_cache_days * 86400}"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert nginx.get(nginx.https(served[name].url_path)).status_code == 403, "no directory listing"
        assert nginx.get(nginx.https(f"{served[name].url_path}missing.png")).status_code == 404
    # Not a served directory: the request goes to the app (here the stub), never to a volume.
    exports = nginx.get(nginx.https("/exports/user-7.zip"))
    assert exports.status_code == 200 and exports.text.startswith("replica="), exports.text[:80]


def test_upload_over_the_body_limit_gets_413(nginx: Nginx) -> None:
    limit = settings_for("prod").proxy.client_max_body_mb * 1024 * 1024
    context = ssl.create_default_context(cafile=nginx.ca)
    connection = http.client.HTTPSConnection("127.0.0.1", nginx.topo.nginx_https_port, context=context, timeout=10)
    connection.putrequest("POST", "/library/upload")
    connection.putheader("Content-Length", str(limit + 1))
    connection.putheader("Content-Type", "application/pdf")
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()
    small = requests.post(nginx.https("/library/upload"), data=b"x" * 1024 * 1024, verify=nginx.ca, timeout=10)
    assert small.status_code == 200


def test_stub_status_only_on_its_internal_listener(nginx: Nginx) -> None:
    status = nginx.get(f"http://{nginx.topo.nginx_status_listen}/stub_status")
    assert status.status_code == 200 and "Active connections" in status.text
    assert "Active connections" not in nginx.get(nginx.https("/stub_status")).text
    assert nginx.get(nginx.http("/stub_status")).status_code == 301


def test_start_script_serves_certbots_certificate_when_there_is_one(environment: Environment) -> None:
    topo, start = _lay_out(environment, "prod")
    live = Path(topo.letsencrypt_live_dir)
    renewed = make_certificates(environment.base / f"renewed-{topo.nginx_https_port}", ["127.0.0.1"], "unused")
    copy(renewed["server.crt"], live / "fullchain.pem", 0o644)
    copy(renewed["server.key"], live / "privkey.pem", 0o600)
    with _started_by_its_script(topo, start):
        served = ssl.get_server_certificate(("127.0.0.1", topo.nginx_https_port))
        assert served.strip() == renewed["server.crt"].read_text().strip()


@contextmanager
def _started_by_its_script(topo: Topology, start: Path) -> Iterator[Server]:
    """nginx started as the container starts it (its start script), as an unprivileged user."""
    user = service_user("www-data")
    user.own(Path(topo.nginx_config_dir).parent)
    server = Server("nginx", ["sh", str(start)], user, Path(topo.nginx_temp_dir) / "console.log", new_session=True)
    server.start()
    try:
        server.wait_for_port(topo.nginx_https_port)
        yield server
    finally:
        server.stop_group(signal.SIGQUIT)


def test_start_script_switches_to_a_new_certificate_without_a_restart(environment: Environment) -> None:
    """The first certificate (and every renewal) is served within reloadCheckSeconds of certbot writing
    it, by a reload of the running nginx: not after a restart, not up to 12 hours later."""
    settings = settings_for("prod")
    tls = settings.proxy.tls.model_copy(update={"reload_check_seconds": 2})
    settings = settings.model_copy(update={"proxy": settings.proxy.model_copy(update={"tls": tls})})
    topo, start = _lay_out(environment, "prod", settings)
    fallback = (Path(topo.nginx_fallback_tls_dir) / "fullchain.pem").read_text().strip()
    with _started_by_its_script(topo, start):
        assert ssl.get_server_certificate(("127.0.0.1", topo.nginx_https_port)).strip() == fallback
        master = Path(topo.nginx_pid_file).read_text()
        issued = make_certificates(environment.base / f"issued-{topo.nginx_https_port}", ["127.0.0.1"], "unused")
        live = Path(topo.letsencrypt_live_dir)
        copy(issued["server.key"], live / "privkey.pem", 0o644)
        copy(issued["server.crt"], live / "fullchain.pem", 0o644)
        expected = issued["server.crt"].read_text().strip()
        deadline = time.monotonic() + 20
        served = fallback
        while served != expected and time.monotonic() < deadline:
            time.sleep(0.5)
            served = ssl.get_server_certificate(("127.0.0.1", topo.nginx_https_port)).strip()
        assert served == expected, "the issued certificate was not served within 20 s"
        assert Path(topo.nginx_pid_file).read_text() == master, "served by the same nginx, reloaded"


@pytest.mark.parametrize("stack", STACKS)
def test_rendered_shell_scripts_pass_shellcheck(tmp_path: Path, stack: str) -> None:
    """nginx's start script and certbot's loop run under /bin/sh in their images (busybox ash, dash)."""
    settings = settings_for(stack)
    topo = container_topology(settings)
    scripts = {"start.sh": render_nginx(settings, topo, image_versions(settings))["start.sh"]}
    if settings.proxy.tls.mode == "letsencrypt":
        scripts["certbot.sh"] = render_certbot(settings, topo)["certbot.sh"]
    for name, text in scripts.items():
        path = write(tmp_path / stack / name, text)
        result = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout
