"""The Kubernetes CronJobs' call script (configs/kubernetes/cron.py) run by sh with curl against a local server
that answers as the app's cron routes do: the bearer token from CRON_SECRET, a success only on 2xx without
`"success": false`, no second call once the server took one, and no secret in any output."""

from __future__ import annotations

import http.server
import json
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from configs.kubernetes.cron import call_script

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl (7.76 or later: --fail-with-body)"),
]
SECRET = secrets.token_urlsafe(36)
ANSWERS = {"/ok": (200, {"success": True}), "/refused": (200, {"success": False}), "/broken": (500, {"error": "x"})}


class Route(http.server.BaseHTTPRequestHandler):
    calls: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Route.calls.append(self.path)
        code, body = ANSWERS[self.path]
        if self.headers.get("Authorization") != f"Bearer {SECRET}":
            code, body = 401, {"error": "Unauthorized"}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Route)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def call(url: str, secret: str = SECRET, retry_seconds: int = 60) -> subprocess.CompletedProcess[str]:
    script = call_script(url, timeout_seconds=5, retry_seconds=retry_seconds)
    env = {"PATH": "/usr/bin:/bin", "CRON_SECRET": secret}
    return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("path", "code"), [("/ok", 0), ("/refused", 1), ("/broken", 22)], ids=["2xx", "success-false", "5xx"]
)
def test_a_call_succeeds_only_on_2xx_without_success_false(server: str, path: str, code: int) -> None:
    Route.calls.clear()
    result = call(server + path)
    assert result.returncode == code, result.stdout + result.stderr
    assert Route.calls == [path]  # never repeated once the server had it
    assert json.dumps(ANSWERS[path][1]) in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_a_wrong_secret_fails(server: str) -> None:
    result = call(server + "/ok", secret="not-the-secret")
    assert result.returncode == 22 and "Unauthorized" in result.stdout


def test_only_a_refused_connection_is_tried_again_for_a_while() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    result = call(f"http://127.0.0.1:{port}/ok", retry_seconds=4)
    assert result.returncode == 7
    assert result.stderr.count("(7)") == 2  # at 0 s and 5 s, then given up
