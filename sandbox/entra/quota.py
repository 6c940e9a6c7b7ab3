"""Graph's throttling, as documented: resource units per app and tenant, and narrower limits.

Source: learn.microsoft.com/graph/throttling-limits ("Identity and access service limits",
"Identity and access reports service limits"), read from microsoftgraph/
microsoft-graph-docs-contrib concepts/throttling-limits.md:
- Directory reads and writes spend resource units from a token bucket per application and
  tenant: 3,500 / 5,000 / 8,000 per 10 s for tenants under 50, 50-500 and over 500 users.
- Base cost 2 for GET `applications`, `oauth2PermissionGrants`, `oauth2PermissionGrants/{id}`,
  `servicePrincipals/{id}/appRoleAssignments` and `users`; 1 for any other identity path.
  `$select` -1, `$expand` +1, `$top` under 20 -1; never below 1.
- Writes also spend a write quota of 3,000 per 2 min 30 s per application and tenant.
- Every answer carries `x-ms-resource-unit`; `x-ms-throttle-limit-percentage` only once the
  application has used more than 0.8 of its limit. A throttled answer is 429 with
  `Retry-After`, `x-ms-throttle-scope` and `x-ms-throttle-information`.
- Audit logs (directoryAudit) are "identity and access reports": 5 requests per 10 s per
  application and tenant.
Source: learn.microsoft.com/graph/api/application-list: "The use of `$select` to get
keyCredentials for applications has a throttling limit of 150 requests per minute for every
tenant."
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Clock = Callable[[], float]

TWO_UNIT_PATHS = re.compile(
    r"^(applications|oauth2PermissionGrants|oauth2PermissionGrants/[^/]+"
    r"|servicePrincipals/[^/]+/appRoleAssignments|users)$"
)
WINDOW = 10.0
WRITE_QUOTA, WRITE_WINDOW = 3000.0, 150.0
REPORTS_QUOTA, REPORTS_WINDOW = 5.0, 10.0
KEY_READS_QUOTA, KEY_READS_WINDOW = 150.0, 60.0
WARN_FROM = 0.8  # share of the limit after which x-ms-throttle-limit-percentage is sent


def directory_quota(users: int) -> float:
    """Resource units per 10 s for one application in a tenant of `users` users."""
    if users < 50:
        return 3500.0
    return 5000.0 if users <= 500 else 8000.0


def resource_units(method: str, path: str, query: Mapping[str, list[str]]) -> int:
    """The documented cost of one request; `path` is relative to /v1.0/."""
    base = 2 if method == "GET" and TWO_UNIT_PATHS.match(path) else 1
    if "$select" in query:
        base -= 1
    if "$expand" in query:
        base += 1
    top = (query.get("$top") or [""])[0]
    if top.isdigit() and int(top) < 20:
        base -= 1
    return max(1, base)


class Bucket:
    """A token bucket: `capacity` units refilled evenly over `window` seconds."""

    def __init__(self, capacity: float, window: float, clock: Clock) -> None:
        self.capacity = capacity
        self.rate = capacity / window
        self.clock = clock
        self.tokens = capacity
        self.at = clock()

    def refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def take(self, cost: float) -> float:
        """Spend `cost` if it is there; otherwise the seconds until it would be (0: taken)."""
        self.refill()
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate

    def used_share(self) -> float:
        return 1.0 - self.tokens / self.capacity


@dataclass
class Meter:
    """What the tenant's API served, for tests and benchmarks to read."""

    requests: int = 0
    resource_units: int = 0
    report_requests: int = 0  # audit-log reads: a separate limit, no resource units
    throttled: int = 0
    key_credential_reads: int = 0

    def snapshot(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "resource_units": self.resource_units,
            "report_requests": self.report_requests,
            "throttled": self.throttled,
            "key_credential_reads": self.key_credential_reads,
        }


@dataclass(frozen=True)
class Verdict:
    """Admitted with `units` spent, or refused: wait `retry_after` s; `scope` names the limit."""

    units: int = 0
    retry_after: float = 0.0
    scope: str = ""
    information: str = ""
    limit_percentage: float | None = None


class Quota:
    """Every limit of one emulated tenant, per calling application."""

    def __init__(self, tenant_id: str, users: int, clock: Clock) -> None:
        self.tenant_id = tenant_id
        self.clock = clock
        self.enforced = True
        self.units_per_window = directory_quota(users)
        self.meter = Meter()
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], Bucket] = {}

    def resize(self, units_per_window: float) -> None:
        """Another directory quota (a test's small one); every window starts again."""
        with self._lock:
            self.units_per_window = units_per_window
            self._buckets.clear()

    def bucket(self, name: str, client: str, capacity: float, window: float) -> Bucket:
        key = (name, client)
        if key not in self._buckets:
            self._buckets[key] = Bucket(capacity, window, self.clock)
        return self._buckets[key]

    def admit(
        self,
        client: str,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        selects_key_credentials: bool,
    ) -> Verdict:
        with self._lock:
            self.meter.requests += 1
            if path.startswith("auditLogs/"):
                return self._report(client)
            if selects_key_credentials:
                self.meter.key_credential_reads += 1
                reads = self.bucket("keys", self.tenant_id, KEY_READS_QUOTA, KEY_READS_WINDOW)
                if self.enforced and (wait := reads.take(1.0)) > 0:
                    return self._refused(client, "Tenant/Read", wait)
            return self._directory(client, method, path, query)

    def _report(self, client: str) -> Verdict:
        self.meter.report_requests += 1
        reports = self.bucket("reports", client, REPORTS_QUOTA, REPORTS_WINDOW)
        if self.enforced and (wait := reports.take(1.0)) > 0:
            return self._refused(client, "Tenant_Application/Read", wait)
        return Verdict()

    def _directory(
        self, client: str, method: str, path: str, query: Mapping[str, list[str]]
    ) -> Verdict:
        units = resource_units(method, path, query)
        directory = self.bucket("units", client, self.units_per_window, WINDOW)
        if self.enforced and (wait := directory.take(units)) > 0:
            return self._refused(client, "Tenant_Application/ReadWrite", wait)
        if method != "GET":
            writes = self.bucket("writes", client, WRITE_QUOTA, WRITE_WINDOW)
            if self.enforced and (wait := writes.take(1.0)) > 0:
                directory.tokens += units  # refused: nothing was spent
                return self._refused(client, "Tenant_Application/Write", wait)
        self.meter.resource_units += units
        share = directory.used_share()
        return Verdict(units=units, limit_percentage=share if share > WARN_FROM else None)

    def _refused(self, client: str, scope: str, wait: float) -> Verdict:
        self.meter.throttled += 1
        return Verdict(
            retry_after=max(1.0, math.ceil(wait)),
            scope=f"{scope}/{client}/{self.tenant_id}",
            information="ResourceUnitLimitExceeded",
        )
