"""What `make load` replays and how it reports, without the load generator itself (tools/load.py runs
locust, which patches the standard library with gevent as it is imported: nothing else imports it).

The traffic shapes are the guide's load-testing section ("Load Testing Recommendations"): a morning peak
of 50 concurrent page readers, 25 concurrent PDF readers and 10 concurrent logins; its exam periods ask for
150 % of that. Each simulated student waits between requests as a reader does (a page, then reading), and
PDF readers fetch 64 KiB ranges as pdf.js does. From one machine every request comes from one address, so
the API and login callers are paced to stay under nginx's per-address limits (`proxy.rateLimits`): a 429
is the limit working, counted apart from the errors.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from model.settings import Settings

PROFILES = ("school-morning", "exam-peak")
EXAM_FACTOR = 1.5  # the guide: "Exam periods: 150% resource increase"
GUIDE_PAGE_READERS = 50  # ab -c 50 on pages
GUIDE_PDF_READERS = 25  # ab -c 25 on a PDF
GUIDE_LOGINS = 10  # ab -c 10 on the sign-in
API_CALLERS = 10
UNDER_LIMIT = 0.8  # the paced callers use this fraction of nginx's per-address rate
P95_BAR_MS = 2000.0  # the guide's warning threshold: "Response time > 2 seconds"
PDF_RANGE_BYTES = 64 * 1024  # pdf.js's default range chunk
KINDS = ("page", "pdf range", "api", "login")


@dataclass(frozen=True)
class Profile:
    """Concurrent users of each kind, their think time, and the paced callers' total rates."""

    name: str
    page_readers: int
    pdf_readers: int
    logins: int
    api_callers: int
    page_think_seconds: tuple[float, float]
    pdf_think_seconds: tuple[float, float]
    api_per_second: float
    logins_per_second: float

    @property
    def users(self) -> int:
        return self.page_readers + self.pdf_readers + self.logins + self.api_callers


def profile_for(name: str, settings: Settings) -> Profile:
    """The profile `name` (one of PROFILES) against the stack's rate limits."""
    factor = EXAM_FACTOR if name == "exam-peak" else 1.0
    limits = settings.proxy.rate_limits
    return Profile(
        name=name,
        page_readers=math.ceil(GUIDE_PAGE_READERS * factor),
        pdf_readers=math.ceil(GUIDE_PDF_READERS * factor),
        logins=math.ceil(GUIDE_LOGINS * factor),
        api_callers=API_CALLERS,
        page_think_seconds=(1.0, 3.0),
        pdf_think_seconds=(0.5, 1.5),
        api_per_second=limits.api_per_second * UNDER_LIMIT,
        logins_per_second=limits.auth_per_minute / 60 * UNDER_LIMIT,
    )


def status_class(status: int | None) -> str:
    """How an answer is counted: "ok" (below 400), "429" (a rate limit), "4xx", "5xx", or "connection"
    (no answer at all)."""
    if status is None or status == 0:
        return "connection"
    if status < 400:
        return "ok"
    if status == 429:
        return "429"
    return "4xx" if status < 500 else "5xx"


@dataclass
class Latency:
    requests: int
    per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass
class ScalerActivity:
    """The scaler's decisions during the run (its JSON log lines), and the running replicas around it."""

    decisions: dict[str, int] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    replicas_before: int = 0
    replicas_after: int = 0


def scaler_activity(log: str, replicas_before: int, replicas_after: int) -> ScalerActivity:
    """Decisions counted by code, and every action other than "none" with its time and reason."""
    decisions: Counter[str] = Counter()
    actions = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or "action" not in entry:
            continue
        decisions[str(entry.get("code", "skipped"))] += 1
        if not str(entry["action"]).startswith("none"):
            actions.append(f"{entry.get('time', '?')[11:19]} {entry['action']}: {entry.get('reason', '')}")
    return ScalerActivity(dict(sorted(decisions.items())), actions, replicas_before, replicas_after)


@dataclass
class LoadReport:
    profile: Profile
    seconds: float
    total: Latency
    by_kind: dict[str, Latency]
    statuses: dict[str, int]
    scaler: ScalerActivity

    @property
    def failed(self) -> int:
        """Requests a student would have seen fail: server errors and no answer (a 429 is not one)."""
        return self.statuses.get("5xx", 0) + self.statuses.get("connection", 0)

    @property
    def meets_bar(self) -> bool:
        return self.total.p95_ms <= P95_BAR_MS and self.failed == 0

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "failed": self.failed,
            "bar": {"p95_ms": P95_BAR_MS, "met": self.meets_bar},
        }


def format_report(report: LoadReport) -> str:
    profile = report.profile
    lines = [
        f"load profile {profile.name}: {profile.page_readers} page readers, {profile.pdf_readers} PDF readers, "
        f"{profile.logins} logins ({profile.logins_per_second:.2f}/s), {profile.api_callers} API callers "
        f"({profile.api_per_second:.1f}/s), {report.seconds:.0f} s",
        "",
        f"  {'':<10} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}",
    ]
    for kind, latency in [*report.by_kind.items(), ("all", report.total)]:
        lines.append(
            f"  {kind:<10} {latency.requests:>9} {latency.per_second:>8.1f} {latency.p50_ms:>8.0f} "
            f"{latency.p95_ms:>8.0f} {latency.p99_ms:>8.0f}"
        )
    counted = ", ".join(f"{name} {count}" for name, count in report.statuses.items()) or "none"
    lines += ["", f"  answers: {counted} (429: the rate limits working, not failures)"]
    scaler = report.scaler
    decided = ", ".join(f"{code} {count}" for code, count in scaler.decisions.items()) or "no decision logged"
    lines += [
        f"  scaler: replicas {scaler.replicas_before} -> {scaler.replicas_after}; decisions: {decided}",
        *(f"    {action}" for action in scaler.actions),
        "",
        f"  p95 {report.total.p95_ms:.0f} ms against the guide's {P95_BAR_MS:.0f} ms, {report.failed} failed: "
        + ("bar met" if report.meets_bar else "BAR NOT MET"),
    ]
    return "\n".join(lines)
