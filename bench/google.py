"""Google discovery against the quota: a full run, a naive loop, and a quiet night.

A 5,000-user Enterprise domain on the emulator, 20 ms added to every answer, the Admin SDK
quota enforced (2,400 queries a minute per project and admin, shared by Directory and
Reports). Prints one JSON object:
- `full`: the connector's first full discovery, its wall time against the quota bound
  (its own Admin SDK requests at 2,400 a minute less the reserve) and its requests;
- `naive`: a `users.list` + `tokens.list` loop as the SDK's documentation writes it
  (sequential, default page size, the SDK's own retries), its requests and time;
- `incremental`: the next night's run (token and admin events since the last run,
  `tokens.list` only for users whose consents changed) as a share of the full run's quota.
The quota window is scaled down (`--scale`: 60 s becomes 60/scale s, the same 2,400
queries in it) so the bench takes minutes, not hours; the JSON says so. Ratios from one
run are what to compare: this machine is noisy.

    python bench/google.py [--users 5000] [--apps 40] [--latency-ms 20] [--scale 6]
"""

# ruff: noqa: E402 - the imports follow the sys.path fix below
from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/google.py`, this folder would come first on sys.path and this file
# would shadow the `google` package: keep the folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import argparse
import asyncio
import json
import resource
import tempfile
import time
from datetime import timedelta
from typing import Any

import google_auth_httplib2
import httplib2
from google.oauth2 import service_account
from googleapiclient import discovery, errors

import sandbox.google
from connectors.google import GoogleConnector
from connectors.google.client import WORKSPACE_SCOPES
from connectors.settings import GoogleSettings, settings_for
from sandbox.google import GoogleEmulator
from sandbox.google.tokenlog import ms
from sandbox.server import serving
from sandbox.tls import make_ca

QUOTA = 2400


def settings_of(table: dict[str, Any]) -> GoogleSettings:
    values = dict(table)
    values["credentials"] = Path(values.pop("credentials_file")).read_text()
    settings = settings_for("google", values)
    assert isinstance(settings, GoogleSettings)
    return settings


def admin_requests(emulator: GoogleEmulator, since: int) -> list[Any]:
    return [r for r in emulator.requests[since:] if r.path.startswith("/admin/")]


async def connector_run(
    settings: GoogleSettings, emulator: GoogleEmulator, cursor: dict[str, Any] | None
) -> tuple[float, dict[str, Any], bool]:
    connector = GoogleConnector(settings, sleep=asyncio.sleep, now=lambda: emulator.now)
    started = time.perf_counter()
    try:
        pages = [page async for page in connector.discover(cursor)]
    finally:
        await connector.aclose()
    checkpoint = pages[-1].checkpoint
    assert checkpoint is not None
    return time.perf_counter() - started, dict(checkpoint.cursor), checkpoint.full


def naive_loop(settings: GoogleSettings) -> float:
    """The loop a script would write: the SDK's defaults, one call at a time."""
    info = json.loads(settings.credentials.get_secret_value())
    credentials = service_account.Credentials.from_service_account_info(
        {**info, "token_uri": str(settings.token_uri)},
        scopes=WORKSPACE_SCOPES,
        subject=settings.admin_subject,
    )
    http = google_auth_httplib2.AuthorizedHttp(
        credentials, http=httplib2.Http(ca_certs=settings.ca_bundle)
    )
    directory = discovery.build(
        "admin",
        "directory_v1",
        http=http,
        client_options={"api_endpoint": str(settings.directory_url)},
        static_discovery=True,
    )
    started = time.perf_counter()
    request = directory.users().list(customer="my_customer")
    while request is not None:
        page = request.execute(num_retries=5)
        for user in page.get("users", []):
            try:
                directory.tokens().list(userKey=user["id"]).execute(num_retries=5)
            except errors.HttpError:
                continue
        request = directory.users().list_next(request, page)
    return time.perf_counter() - started


def quiet_night(emulator: GoogleEmulator) -> int:
    """A night: a third of the apps in use are used, five users consent, five revoke."""
    emulator.advance(timedelta(hours=20), active_share=0.3, seed=1)
    holders = [u for u in emulator.seed.users if u.tokens]
    for index, user in enumerate(holders[:5]):
        token = next(iter(holders[-1 - index].tokens.values()))
        emulator.consent(user.id, token, emulator.now - timedelta(hours=3))
    for user in holders[5:10]:
        emulator.revoke(user.id, next(iter(user.tokens)), emulator.now - timedelta(hours=2))
    return 10


def measure(users: int, apps: int, latency_ms: float, scale: float) -> dict[str, Any]:
    window = 60.0 / scale
    size = round(apps / 0.6)  # the seed makes 60 % of `size` third-party apps
    emulator = sandbox.google.build(
        seed=2026, size=size, users=users, quota_per_minute=QUOTA, quota_window=window
    )
    now = ms(emulator.now)
    events = emulator.token_log.count(now - 179 * 86_400_000, now)
    clients = {cid for user in emulator.seed.users for cid in user.tokens}
    with tempfile.TemporaryDirectory() as folder:
        ca = make_ca(Path(folder))
        with serving(emulator, ca) as server:
            emulator.faults.slow_seconds = latency_ms / 1000
            settings = settings_of(
                emulator.tenant_table("google-bench", server.url, ca.ca_bundle, Path(folder))
            )
            usable = QUOTA * (1 - settings.rate_limit_reserve)

            first = len(emulator.requests)
            seconds, cursor, full = asyncio.run(connector_run(settings, emulator, None))
            assert full
            ours = admin_requests(emulator, first)
            iam = len(emulator.requests[first:]) - len(ours) - 1  # less the token request
            bound = len(ours) / usable * window
            throttled = emulator.quota.throttled

            time.sleep(window)  # a fresh window for the naive loop
            first_naive = len(emulator.requests)
            naive_seconds = naive_loop(settings)
            naive = admin_requests(emulator, first_naive)

            changes = quiet_night(emulator)
            first_night = len(emulator.requests)
            night_seconds, _, full = asyncio.run(connector_run(settings, emulator, cursor))
            assert not full
            night = admin_requests(emulator, first_night)
    return {
        "tenant": {
            "users": users,
            "third_party_apps": len(clients),
            "edition": "enterprise",
            "token_events_in_179_days": events,
            "latency_ms": latency_ms,
        },
        "quota": {
            "queries_per_window": QUOTA,
            "window_seconds": window,
            "scaled": f"Google's 60 s window scaled down {scale:g}x; all times below in "
            "scaled seconds (multiply by the scale for real ones)",
            "rate_limit_reserve": settings.rate_limit_reserve,
        },
        "full": {
            "seconds": round(seconds, 2),
            "bound_seconds": round(bound, 2),
            "ratio_to_bound": round(seconds / bound, 3),
            "admin_sdk_requests": len(ours),
            "tokens_list": sum(r.path.endswith("/tokens") for r in ours),
            "reports_requests": sum("/activity/" in r.path for r in ours),
            "iam_requests": iam,
            "throttled": throttled,
        },
        "naive": {
            "seconds": round(naive_seconds, 2),
            "requests": len(naive),
            "requests_ratio_connector_to_naive": round(len(ours) / len(naive), 3),
        },
        "incremental": {
            "consent_changes": changes,
            "seconds": round(night_seconds, 2),
            "admin_sdk_requests": len(night),
            "tokens_list": sum(r.path.endswith("/tokens") for r in night),
            "share_of_full_run_quota": round(len(night) / len(ours), 4),
        },
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--apps", type=int, default=40, help="third-party apps, about")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--scale", type=float, default=6.0, help="quota window = 60 s / scale")
    args = parser.parse_args()
    print(json.dumps(measure(args.users, args.apps, args.latency_ms, args.scale), indent=2))


if __name__ == "__main__":
    main()
