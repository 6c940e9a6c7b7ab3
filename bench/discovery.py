"""Discovery at tenant scale through the production path (config, SDKs over TLS, store).

Prints one JSON object: per provider the principals loaded, the wall time and the rate,
and the ratio of a re-run to the first run (the store's upsert cost when nothing changed).
Ratios from one run are what to compare: this machine is noisy.

    python bench/discovery.py [--scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from recert import db
from recert.clock import SystemClock
from recert.config import load_settings
from recert.discovery import discover_tenant
from sandbox.tenants import Sizes, running_tenants


def measure(scale: float) -> dict[str, Any]:
    sizes = Sizes(
        okta_apps=int(1000 * scale),
        entra_principals=int(2000 * scale),
        google_principals=int(400 * scale),
        google_users=int(2000 * scale),
    )
    results: dict[str, Any] = {"scale": scale}
    with tempfile.TemporaryDirectory() as folder, running_tenants(Path(folder), sizes) as tenants:
        config = Path(folder) / "recert.toml"
        config.write_text(tenants.config(database={"url": f"sqlite:///{folder}/bench.db"}))
        settings = load_settings(config, {})
        engine = db.make_engine(settings.database.url)
        db.upgrade(engine)
        for tenant in settings.tenants:
            runs, summaries = [], []
            for _ in range(2):
                started = time.perf_counter()
                summaries.append(discover_tenant(engine, tenant, SystemClock()))
                runs.append(time.perf_counter() - started)
                assert summaries[-1].status == "complete", summaries[-1].error
            first, rerun = summaries
            results[tenant.kind] = {
                "principals": first.principals_seen,
                "first_run_s": round(runs[0], 3),
                "rerun_s": round(runs[1], 3),
                "rerun_kind": "full" if rerun.full else "delta",
                "principals_per_s": round(first.principals_seen / runs[0], 1),
                "rerun_to_first_ratio": round(runs[1] / runs[0], 3),
            }
        results["peak_rss_mib"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="1.0 = 1,000 Okta apps, 2,000 SPs, 2,000 Google users",
    )
    print(json.dumps(measure(parser.parse_args().scale), indent=2))


if __name__ == "__main__":
    main()
