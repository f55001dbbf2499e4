"""`make load STACK=e2e [PROFILE=school-morning|exam-peak] [SECONDS=60]`: the guide's traffic shapes
(tools/load_report.py) replayed with locust against nginx's published HTTPS port of a stack published on
this machine's loopback, and what the scaler did meanwhile.

    python -m tools.load --stack e2e [--profile school-morning] [--seconds 60] [--format table|json]

Exit 0 when the p95 latency is within the guide's 2 s and no request failed (5xx or no answer), 1 when
not, 2 for a usage mistake. Locust runs as a library, in this process only (it patches the standard
library with gevent when imported). The certificate is not checked: the load goes to 127.0.0.1 with the
stack's domain as the TLS server name, whatever issued its certificate.

The book the PDF readers open is put into the books volume first, through the stand-in app's files route
(`POST /api/files/books/<name>`: the e2e stack's app); for another app, name a book it already has with
`--book` (its path under `/books/`) and the upload is skipped.
"""

from __future__ import annotations

# isort: off
import locust  # noqa: F401  (first: it patches the standard library with gevent before anything imports ssl)

# isort: on
import argparse
import json
import random
import secrets
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import requests
import urllib3
from locust import HttpUser, between, constant_throughput, task
from locust.env import Environment
from locust.stats import StatsEntry
from requests.adapters import HTTPAdapter

from components.container import LABEL_PREFIX
from tools.load_report import (
    KINDS,
    PDF_RANGE_BYTES,
    PROFILES,
    Latency,
    LoadReport,
    Profile,
    format_report,
    profile_for,
    scaler_activity,
    status_class,
)
from tools.ops import DockerCli, UsageError, check_count, check_format, container_name, load_stack

SEED_BOOK = "load-test-book.pdf"
SEED_BOOK_BYTES = 1 << 20  # the stand-in's upload limit
MAX_SECONDS = 600
SPAWN_SECONDS = 10
REQUEST_TIMEOUT_SECONDS = 30.0

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


class ServerNameAdapter(HTTPAdapter):
    """HTTPS to an address with the stack's domain as the TLS server name (SNI), its certificate unchecked
    (the module's docstring says why)."""

    def __init__(self, server_name: str) -> None:
        self.server_name = server_name
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(server_hostname=self.server_name, assert_hostname=False, cert_reqs="CERT_NONE")
        super().init_poolmanager(*args, **kwargs)


def prepare(session: requests.Session, domain: str) -> None:
    session.mount("https://", ServerNameAdapter(domain))
    session.verify = False
    session.trust_env = False  # neither a proxy nor REQUESTS_CA_BUNDLE from the environment: straight to loopback
    session.headers["Host"] = domain


class Student(HttpUser):
    """What every simulated user shares: the stack's domain on each request."""

    abstract = True
    domain = ""
    book_path = ""
    book_bytes = 0

    def on_start(self) -> None:
        prepare(self.client, self.domain)


class PageReader(Student):
    abstract = True

    @task
    def open_a_page(self) -> None:
        self.client.get(random.choice(("/", "/library")), name="page", timeout=REQUEST_TIMEOUT_SECONDS)


class PdfReader(Student):
    abstract = True

    @task
    def read_a_range(self) -> None:
        start = random.randrange(0, max(1, self.book_bytes - PDF_RANGE_BYTES))
        headers = {"Range": f"bytes={start}-{start + PDF_RANGE_BYTES - 1}"}
        self.client.get(self.book_path, headers=headers, name="pdf range", timeout=REQUEST_TIMEOUT_SECONDS)


class ApiCaller(Student):
    abstract = True

    @task
    def call_the_api(self) -> None:
        self.client.get("/api/health", name="api", timeout=REQUEST_TIMEOUT_SECONDS)


class Login(Student):
    abstract = True

    @task
    def sign_in(self) -> None:
        form = {"email": f"student-{secrets.token_hex(3)}@school.test", "password": secrets.token_urlsafe(12)}
        self.client.post("/api/auth/callback/credentials", data=form, name="login", timeout=REQUEST_TIMEOUT_SECONDS)


def user_classes(profile: Profile, domain: str, book_path: str, book_bytes: int) -> list[type[HttpUser]]:
    """The profile's users as locust classes: a fixed count of each, with their think time or pace."""
    shared = {"abstract": False, "domain": domain, "book_path": book_path, "book_bytes": book_bytes}
    kinds: list[tuple[type[Student], int, Any]] = [
        (PageReader, profile.page_readers, between(*profile.page_think_seconds)),
        (PdfReader, profile.pdf_readers, between(*profile.pdf_think_seconds)),
        (ApiCaller, profile.api_callers, constant_throughput(profile.api_per_second / profile.api_callers)),
        (Login, profile.logins, constant_throughput(profile.logins_per_second / profile.logins)),
    ]
    return [
        type(base.__name__ + "User", (base,), {**shared, "fixed_count": count, "wait_time": wait})
        for base, count, wait in kinds
        if count
    ]


def seed_book(base_url: str, domain: str, book: str | None) -> tuple[str, int]:
    """The book's URL path and size: `--book` as it is, or a generated PDF put into the books volume."""
    with requests.Session() as session:
        prepare(session, domain)
        if book:
            head = session.head(f"{base_url}/books/{book}", timeout=REQUEST_TIMEOUT_SECONDS)
            if head.status_code != 200:
                raise UsageError(
                    "--book", book, f"must be a book nginx serves under /books/ (HEAD: {head.status_code})"
                )
            return f"/books/{book}", int(head.headers.get("Content-Length", "0"))
        content = b"%PDF-1.7\n" + secrets.token_bytes(SEED_BOOK_BYTES - 9)
        answer = session.post(f"{base_url}/api/files/books/{SEED_BOOK}", data=content, timeout=REQUEST_TIMEOUT_SECONDS)
        if answer.status_code != 201:
            raise SystemExit(
                f"could not put the test book into the books volume: {answer.status_code} {answer.text[:200]}"
            )
        return f"/books/{SEED_BOOK}", len(content)


def latency(entry: StatsEntry, seconds: float) -> Latency:
    return Latency(
        requests=entry.num_requests,
        per_second=entry.num_requests / seconds if seconds else 0.0,
        p50_ms=float(entry.get_response_time_percentile(0.50) or 0),
        p95_ms=float(entry.get_response_time_percentile(0.95) or 0),
        p99_ms=float(entry.get_response_time_percentile(0.99) or 0),
    )


def run_locust(classes: list[type[HttpUser]], base_url: str, seconds: float) -> tuple[Environment, Counter[str]]:
    """Every user started over SPAWN_SECONDS, then the run for `seconds` in all; the answers counted by
    class (tools.load_report.status_class)."""
    environment = Environment(user_classes=list(classes), host=base_url, stop_timeout=REQUEST_TIMEOUT_SECONDS)
    statuses: Counter[str] = Counter()

    def count(response: requests.Response | None = None, **_: Any) -> None:
        statuses[status_class(getattr(response, "status_code", None))] += 1  # 0 when no answer came

    environment.events.request.add_listener(count)  # type: ignore[no-untyped-call]  # locust leaves it untyped
    runner = environment.create_local_runner()
    users = sum(getattr(each, "fixed_count", 0) for each in classes)
    runner.start(users, spawn_rate=max(1.0, users / SPAWN_SECONDS))
    time.sleep(seconds)  # gevent's sleep (locust patched `time`): the users run meanwhile
    runner.quit()
    return environment, statuses


def running_replicas(cli: DockerCli) -> int:
    labels = [f"label={LABEL_PREFIX}.stack={cli.stack}", f"label={LABEL_PREFIX}.service=app"]
    return len(cli.docker("ps", "-q", *(arg for label in labels for arg in ("--filter", label))).split())


def scaler_log_since(cli: DockerCli, since: datetime) -> str:
    """The scaler's log lines since `since`, or "" for a stack without a scaler."""
    if container_name(cli.stack, "scaler") not in cli.containers():
        return ""
    return cli.logs("scaler", since=since.isoformat())


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="e2e")
    parser.add_argument("--profile", default="school-morning")
    parser.add_argument("--seconds", default="60")
    parser.add_argument("--book", default=None)
    parser.add_argument("--format", default="table")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    try:
        settings = load_stack(arguments.stack)
        if arguments.profile not in PROFILES:
            raise UsageError("PROFILE", arguments.profile, f"must be one of {', '.join(PROFILES)}")
        seconds = check_count("SECONDS", arguments.seconds, 10, MAX_SECONDS)
        output = check_format(arguments.format)
        if not settings.proxy.host_ip.is_loopback:
            raise UsageError(
                "settings.proxy.hostIp",
                str(settings.proxy.host_ip),
                "the load test runs only against a stack published on this machine's loopback (127.0.0.0/8)",
            )
        base_url = f"https://{settings.proxy.host_ip}:{settings.proxy.https_host_port}"
        book_path, book_bytes = seed_book(base_url, settings.domain, arguments.book)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    profile = profile_for(arguments.profile, settings)
    cli = DockerCli(settings.host.docker_host, arguments.stack)
    before, started = running_replicas(cli), datetime.now(UTC)
    print(f"load: {profile.users} users for {seconds} s against {base_url} ...", file=sys.stderr)
    environment, statuses = run_locust(user_classes(profile, settings.domain, book_path, book_bytes), base_url, seconds)
    elapsed = (datetime.now(UTC) - started).total_seconds()
    stats = environment.stats
    report = LoadReport(
        profile=profile,
        seconds=elapsed,
        total=latency(stats.total, elapsed),
        by_kind={kind: latency(stats.get(kind, method), elapsed) for kind, method in kind_methods()},
        statuses=dict(sorted(statuses.items())),
        scaler=scaler_activity(scaler_log_since(cli, started), before, running_replicas(cli)),
    )
    print(json.dumps(report.as_json(), indent=2) if output == "json" else format_report(report))
    return 0 if report.meets_bar else 1


def kind_methods() -> list[tuple[str, str]]:
    return [(kind, "POST" if kind == "login" else "GET") for kind in KINDS]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
