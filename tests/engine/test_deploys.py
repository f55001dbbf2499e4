"""Deploys without downtime on the real engine (README "Deploys"): the e2e stack under a steady load through
nginx while `pulumi up` (the e2e applier's update, in the Pulumi engine's order) rolls the app to a second
stand-in image, and while it changes only nginx's configuration; no request may fail. Each change is rolled
back the same way afterwards, so the stack is the session's again for the tests that follow."""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import docker
import pytest
import urllib3

from e2e.stack import STACK, Running, redeploy, services, wait_until_healthy
from tests.engine.conftest import FIGURES, started_by_the_scaler
from tools.plan import CONTAINER, settings_for

pytestmark = pytest.mark.engine

SETTINGS = settings_for(STACK)
NEW_IMAGE = f"{SETTINGS.app.image.rsplit(':', 1)[0]}:1.0.1-e2e" if SETTINGS.app.image else ""
WORKERS = 4
PATHS = ("/library", "/", "/library", "/health")  # pages through the app (a query each), and nginx's own
ROLL_LIMIT_SECONDS = 600


@dataclass
class SteadyLoad:
    """WORKERS clients through nginx's published port, one request after the other, until stopped; every
    answer counted by status, every request without an answer kept with its error."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> SteadyLoad:
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(WORKERS)]
        for thread in self.threads:
            thread.start()
        return self

    def _client(self, number: int) -> None:
        pool = urllib3.HTTPSConnectionPool(
            "127.0.0.1",
            SETTINGS.proxy.https_host_port,
            server_hostname=SETTINGS.domain,
            assert_hostname=False,
            cert_reqs="CERT_NONE",
            timeout=urllib3.Timeout(connect=5, read=30),
            maxsize=1,
        )
        sent = 0
        kept_alive = False  # the last request was answered, so the next one goes on the same connection
        with pool:
            while not self.stop.is_set():
                path = PATHS[(number + sent) % len(PATHS)]
                sent += 1
                try:
                    answer = self._get(pool, path, kept_alive)
                    self.statuses[answer.status] += 1
                    kept_alive = True
                except urllib3.exceptions.HTTPError as error:
                    self.errors.append(f"{time.strftime('%H:%M:%S')} {path}: {error}")
                    kept_alive = False

    def _get(self, pool: urllib3.HTTPSConnectionPool, path: str, kept_alive: bool) -> urllib3.BaseHTTPResponse:
        """GET `path`. A kept-alive connection that the server closes before any answer (nginx's old workers
        close their idle connections at a reload, and a request can cross the close) is sent once more on a
        new connection, as browsers do for an idempotent request (RFC 9112 9.3.1); each such resend is kept."""
        headers = {"Host": SETTINGS.domain}
        try:
            return pool.request("GET", path, headers=headers, retries=False)
        except urllib3.exceptions.ProtocolError as error:
            if not (kept_alive and isinstance(error.args[-1], ConnectionResetError)):
                raise
            self.resent.append(f"{time.strftime('%H:%M:%S')} {path}: {error}")
            return pool.request("GET", path, headers=headers, retries=False)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=40)

    @property
    def failed(self) -> list[str]:
        server_errors = [f"{count} x {status}" for status, count in self.statuses.items() if status >= 500]
        return server_errors + self.errors

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())


@pytest.fixture(scope="module")
def new_image(engine: docker.DockerClient) -> Iterator[str]:
    """A second stand-in app image: the first with one more label, so another image id, as a release is."""
    dockerfile = f"FROM {SETTINGS.app.image}\nLABEL org.1001stories.e2e-release=1.0.1\n"
    engine.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=NEW_IMAGE, rm=True, pull=False)
    yield NEW_IMAGE
    # Untag only: the session's stack may still hold a container of it until its teardown.
    engine.images.remove(NEW_IMAGE, force=True, noprune=True)


def under_load(engine: docker.DockerClient, action: Callable[[], Running]) -> tuple[Running, SteadyLoad, float]:
    """`action` while the steady load runs (a few seconds of it before and after); its result, the load,
    and the action's duration."""
    load = SteadyLoad().start()
    try:
        time.sleep(3)
        started = time.monotonic()
        result = action()
        duration = time.monotonic() - started
        wait_until_healthy(engine, [str(inputs["name"]) for inputs in services(result.resources)], 120)
        time.sleep(3)
    finally:
        load.finish()
    return result, load, duration


def replicas(engine: docker.DockerClient) -> list[Any]:
    labels = [f"org.1001stories.stack={STACK}", "org.1001stories.service=app"]
    return [
        c for c in engine.containers.list(all=True, filters={"label": labels}) if "org.1001stories.replica" in c.labels
    ]


def app_image(settings: dict[str, Any], image: str) -> None:
    settings["app"]["image"] = image


def test_a_new_app_image_rolls_without_a_failed_request(
    stack: Running, engine: docker.DockerClient, new_image: str
) -> None:
    old_names = {str(r.inputs["name"]) for r in stack.resources if r.type == CONTAINER}
    new_id = engine.images.get(new_image).id
    rolled, load, duration = under_load(
        engine, lambda: redeploy(engine, stack, lambda settings: app_image(settings, new_image), log=lambda _: None)
    )
    try:
        assert load.failed == [], f"{len(load.failed)} failed of {load.answered + len(load.errors)}: {load.failed[:10]}"
        assert load.answered > 50 and duration < ROLL_LIMIT_SECONDS
        found = replicas(engine)
        assert len(found) == SETTINGS.app.max_replicas, [c.name for c in found]
        assert all(c.image.id == new_id and c.labels["org.1001stories.image"] == new_image for c in found)
        assert not {c.name for c in found} & old_names, "every replica is a new container under a new name"
        for replica in found:
            if int(replica.labels["org.1001stories.replica"]) <= SETTINGS.app.replicas:
                assert replica.status == "running", replica.name
            else:  # created stopped: the scaler's to start, never the deploy's
                assert replica.status == "created" or started_by_the_scaler(engine, replica), replica.name
        FIGURES["rolling deploy of a new app image (e2e: 2 running + 1 stopped replica)"] = (
            f"{duration:.0f} s, {load.answered} requests answered meanwhile, 0 failed"
        )
    finally:  # back to the session's stack, also after a failed check, for the tests that follow
        back, load, _ = under_load(engine, lambda: redeploy(engine, rolled, lambda settings: None, log=lambda _: None))
    assert load.failed == [], f"rolling back: {load.failed[:10]}"
    assert {str(r.inputs["name"]) for r in back.resources if r.type == CONTAINER} == old_names


def test_a_new_nginx_conf_is_reloaded_without_a_restart_or_a_failed_request(
    stack: Running, engine: docker.DockerClient
) -> None:
    nginx = engine.containers.get(f"{STACK}-nginx")
    stricter = SETTINGS.proxy.rate_limits.api_per_second + 7

    def with_api_limit(running: Running, limit: int) -> Running:
        """Deploys the stack with `limit`, and waits until nginx has loaded it (its start script looks for a
        changed nginx.conf every proxy.tls.reloadCheckSeconds), so that the reload happens under the load."""

        def change(settings: dict[str, Any]) -> None:
            settings["proxy"].setdefault("rateLimits", {})["apiPerSecond"] = limit

        reloads = nginx_reloads(nginx)
        changed = redeploy(engine, running, change, log=lambda _: None)
        assert f"rate={limit}r/s" in nginx_conf(nginx), "the new nginx.conf is in nginx's config volume"
        deadline = time.monotonic() + SETTINGS.proxy.tls.reload_check_seconds * 3 + 10
        while nginx_reloads(nginx) == reloads:
            assert time.monotonic() < deadline, f"nginx did not reload the nginx.conf with rate={limit}r/s"
            time.sleep(0.5)
        return changed

    changed, load, duration = under_load(engine, lambda: with_api_limit(stack, stricter))
    try:
        nginx.reload()
        assert nginx.id == engine.containers.get(f"{STACK}-nginx").id and nginx.attrs["RestartCount"] == 0
        assert load.failed == [], load.failed[:10]
        FIGURES["nginx config-only deploy (reloaded, not replaced)"] = (
            f"{duration:.1f} s until nginx runs the new file, {load.answered} requests, 0 failed,"
            f" {len(load.resent)} resent once on a new connection (a kept-alive one closed at the reload)"
        )
    finally:  # back to the session's stack, also after a failed check
        _, load, _ = under_load(engine, lambda: with_api_limit(changed, SETTINGS.proxy.rate_limits.api_per_second))
    assert load.failed == [], f"rolling back: {load.failed[:10]}"


def nginx_conf(nginx: Any) -> str:
    """nginx's configuration file as `nginx -T` reads it in the container (checked and printed)."""
    result = nginx.exec_run(["nginx", "-T", "-q", "-c", "/etc/stories/nginx/nginx.conf"])
    return result.output.decode(errors="replace") if isinstance(result.output, bytes) else ""


def nginx_reloads(nginx: Any) -> int:
    """How many times nginx's start script has reloaded a changed nginx.conf (it logs each)."""
    logs: bytes = nginx.logs()
    return logs.decode(errors="replace").count("nginx.conf changed: reloaded")
