"""A realistic Okta org inventoried against the bound its rate-limit buckets set.

The org: 300 apps, 250 API tokens, a few AI agents, and 90 days of System Log with
thousands of sign-ins a day and hourly token grants for every service app. Okta's real
per-minute limits apply, with the minute shrunk by `--scale` (the same factor for the
emulator's windows and for the bound), so the run takes seconds instead of minutes.

The bound: each bucket can give `limit * (1 - reserve)` requests a window; a run needs at
least `requests / that` windows of its busiest bucket (buckets are independent and are
walked side by side). The ratio compares the measured wall time to that bound.

The emulator runs in a child process, so the peak RSS is the connector's own.

    python bench/okta.py [--scale 10] [--apps 300] [--tokens 250]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on the path and its name would hide the
# `okta` SDK package: take the folder off before anything imports it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from multiprocessing.connection import Connection  # noqa: E402
from typing import Any  # noqa: E402

from connectors.okta import OktaConnector  # noqa: E402
from connectors.settings import OktaSettings  # noqa: E402
from sandbox.okta import Volume, build  # noqa: E402
from sandbox.server import serving  # noqa: E402
from sandbox.tls import make_ca  # noqa: E402

RESERVE = 0.3


def serve(folder: str, args: dict[str, Any], pipe: Connection) -> None:
    """Child process: build the org, serve it, report what it served when told to stop."""
    window = round(60 / args["scale"])
    emulator = build(
        seed=42,
        size=args["apps"],
        api_tokens=args["tokens"],
        agents=4,
        volume=Volume(sso_per_day=3000, token_every_hours=1),
        window=window,
    )
    ca = make_ca(Path(folder))
    with serving(emulator, ca) as server:
        pipe.send(
            {
                "url": server.url,
                "ca_bundle": str(ca.ca_bundle),
                "token": emulator.read_token,
                "window": window,
                "limits": {name: bucket.limit for name, bucket in emulator.buckets.items()},
                "events": len(emulator.org.log),
            }
        )
        pipe.recv()  # the run is over
        served: dict[str, int] = {}
        statuses: dict[str, int] = {}
        for _, bucket, status in emulator.served:
            served[bucket] = served.get(bucket, 0) + 1
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        pipe.send({"served": served, "statuses": statuses})


async def inventory(org: dict[str, Any]) -> dict[str, Any]:
    settings = OktaSettings(
        name="okta-bench",
        org_url=org["url"],
        ca_bundle=org["ca_bundle"],
        api_token=org["token"],
        rate_limit_reserve=RESERVE,
    )
    connector = OktaConnector(settings, sleep=asyncio.sleep, now=_now)
    counts: dict[str, int] = {}
    started = time.perf_counter()
    try:
        async for page in connector.discover():
            for principal in page.principals:
                counts[principal.kind.value] = counts.get(principal.kind.value, 0) + 1
            final = page.checkpoint
    finally:
        await connector.aclose()
    elapsed = time.perf_counter() - started
    assert final is not None, "the run did not complete"
    assert final.full, "the run did not complete"
    return {
        "seconds": elapsed,
        "principals": counts,
        "not_visible": dict(final.not_visible),
        "log_window_days": round(final.cursor["log_window_seconds"] / 86_400, 2),
    }


def _now() -> datetime:
    return datetime.now(UTC)


def measure(scale: float, apps: int, tokens: int) -> dict[str, Any]:
    args = {"scale": scale, "apps": apps, "tokens": tokens}
    with tempfile.TemporaryDirectory() as folder:
        parent, child = multiprocessing.Pipe()
        process = multiprocessing.get_context("spawn").Process(
            target=serve, args=(folder, args, child), daemon=True
        )
        process.start()
        org = parent.recv()
        run = asyncio.run(inventory(org))
        parent.send("done")
        stats = parent.recv()
        process.join(timeout=30)
    window = org["window"]
    served = stats["served"]
    bound_by = {
        bucket: count / (org["limits"][bucket] * (1 - RESERVE)) * window
        for bucket, count in served.items()
        if bucket != "oauth2"
    }
    busiest = max(bound_by, key=lambda bucket: bound_by[bucket])
    bound = bound_by[busiest]
    return {
        "org": {
            "apps": apps,
            "api_tokens": tokens,
            "system_log_events_kept": org["events"],
            "principals_found": run["principals"],
        },
        "scale": {
            "window_seconds": window,
            "okta_window_seconds": 60,
            "note": "Okta's per-minute limits per shrunk window; bound and run use the same",
        },
        "reserve": RESERVE,
        "limits_per_window": {k: v for k, v in org["limits"].items() if k in served},
        "requests_per_bucket": served,
        "statuses": stats["statuses"],
        "bound_seconds_per_bucket": {k: round(v, 2) for k, v in bound_by.items()},
        "bound_seconds": round(bound, 2),
        "bound_bucket": busiest,
        "time_seconds": round(run["seconds"], 2),
        "ratio": round(run["seconds"] / bound, 3),
        "log_window_days_after_timeouts": run["log_window_days"],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0, help="shrink Okta's minute by this")
    parser.add_argument("--apps", type=int, default=300)
    parser.add_argument("--tokens", type=int, default=250)
    options = parser.parse_args()
    print(json.dumps(measure(options.scale, options.apps, options.tokens), indent=2))


if __name__ == "__main__":
    main()
