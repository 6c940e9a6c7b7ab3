"""Entra discovery at 5,000 and 50,000 service principals against Graph's quota.

The emulated tenant runs in a process of its own, answering every request 20 ms late and
enforcing Graph's resource-unit quota (8,000 per 10 s for a tenant over 500 users, 429 with
Retry-After beyond it). For each size: the whole `recert discover` command (enumeration,
store, owner resolution and risk) in a subprocess of its own, then a quiet night's delta
run of the same command; at the smallest size also a naive msgraph-sdk loop (models, one
owners, one assignments and one grants request per service principal, 20 in flight).
Prints one JSON object: per run time, requests, resource units, directory-audit reads,
throttled answers and peak RSS, and the ratios the targets are stated in.

    python bench/entra.py [--sizes 5000 50000] [--latency 0.02] [--no-naive]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from multiprocessing import Pipe, Process
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import tomli_w

QUOTA = 8000  # resource units per 10 s: Graph's figure for tenants over 500 users
SEED = 23


def serve(pipe: Connection, size: int, latency: float, folder: str) -> None:
    """The emulated tenant, in its own process; answers 'meter' and 'stop' on `pipe`."""
    from sandbox.entra import build
    from sandbox.server import EmulatorServer
    from sandbox.tls import make_ca

    ca = make_ca(Path(folder))
    app = build(seed=SEED, size=size)
    server = EmulatorServer(app, ca).start()
    app.faults.slow_seconds = latency
    table = app.tenant_table("entra-bench", server.url, ca.ca_bundle, Path(folder) / "secrets")
    pipe.send({**table, "resource_units_per_10s": QUOTA})
    while (command := pipe.recv()) != "stop":
        if command == "meter":
            pipe.send({**app.quota.meter.snapshot(), "emulator_cpu_s": time.process_time()})
    server.stop()


def recert(config: Path, now: datetime, *args: str) -> dict[str, Any]:
    """One CLI command in a subprocess: wall time, peak RSS, and its JSON output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECERT_")}
    env.update(RECERT_CONFIG=str(config), RECERT_NOW=now.isoformat())
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "recert", *args, "--format", "json"],
            env=env,
            cwd=config.parent,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        assert process.stdout is not None
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        if status != 0:
            errors.seek(0)
            raise RuntimeError(errors.read().decode()[-3000:])
    return {
        "seconds": round(seconds, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "output": json.loads(output),
    }


def naive_loop(table: dict[str, Any]) -> None:
    """What a script written straight from the SDK docs does (run as a subprocess): the
    generated models, the default middleware (which honours Retry-After), three requests
    per service principal."""
    import httpx
    from azure.identity.aio import ClientSecretCredential
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph import GraphServiceClient
    from msgraph.generated.oauth2_permission_grants import oauth2_permission_grants_request_builder
    from msgraph.graph_request_adapter import GraphRequestAdapter
    from msgraph_core import GraphClientFactory
    from msgraph_core.authentication import AzureIdentityAuthenticationProvider

    async def run() -> int:
        credential = ClientSecretCredential(
            table["tenant_id"],
            table["client_id"],
            Path(table["client_secret_file"]).read_text(),
            authority=table["authority"],
            disable_instance_discovery=True,
            connection_verify=table["ca_bundle"],
        )
        http = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(verify=table["ca_bundle"], timeout=60.0)
        )
        auth = AzureIdentityAuthenticationProvider(
            credential, scopes=[f"{table['graph_url']}/.default"], allowed_hosts=["127.0.0.1"]
        )
        adapter = GraphRequestAdapter(auth, client=http)
        adapter.base_url = f"{table['graph_url']}/v1.0"
        client = GraphServiceClient(request_adapter=adapter)
        page = await client.service_principals.get()
        principals = []
        while page is not None:
            principals.extend(page.value or [])
            link = page.odata_next_link
            page = await client.service_principals.with_url(link).get() if link else None
        gate = asyncio.Semaphore(20)

        async def one(sp_id: str) -> None:
            async with gate:
                item = client.service_principals.by_service_principal_id(sp_id)
                await item.owners.get()
                await item.app_role_assignments.get()
                grants = (
                    oauth2_permission_grants_request_builder.Oauth2PermissionGrantsRequestBuilder
                )
                query = grants.Oauth2PermissionGrantsRequestBuilderGetQueryParameters(
                    filter=f"clientId eq '{sp_id}'"
                )
                await client.oauth2_permission_grants.get(
                    RequestConfiguration(query_parameters=query)
                )

        await asyncio.gather(*(one(str(sp.id)) for sp in principals))
        await http.aclose()
        await credential.close()
        return len(principals)

    print(json.dumps({"principals": asyncio.run(run())}))


def measure(size: int, latency: float, naive: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        mine, theirs = Pipe()
        emulator = Process(target=serve, args=(theirs, size, latency, folder), daemon=True)
        emulator.start()
        table = mine.recv()
        config = Path(folder) / "recert.toml"
        database = {"url": f"sqlite:///{folder}/bench.db"}
        config.write_text(
            tomli_w.dumps(
                {"database": database, "iam_email": "iam@example.com", "tenants": [table]}
            )
        )

        def meter() -> dict[str, int]:
            mine.send("meter")
            return dict(mine.recv())

        def run(label: str, now: datetime) -> dict[str, Any]:
            before = meter()
            result = recert(config, now, "discover")
            after = meter()
            summary = result.pop("output")[0]
            assert summary["status"] == "complete", summary
            return {
                **{k: round(after[k] - before[k], 2) for k in after},
                "seconds": result["seconds"],
                "cpu_s": result["cpu_s"],
                "peak_rss_mib": result["peak_rss_mib"],
                "principals": summary["principals_seen"],
                "kind": "full" if summary["full"] else "delta",
            }

        start = datetime.now(UTC).replace(microsecond=0)
        results: dict[str, Any] = {"full": run("full", start)}
        results["nightly"] = run("nightly", start + timedelta(days=1))
        if naive:
            before = meter()
            started = time.perf_counter()
            process = subprocess.Popen(
                [sys.executable, __file__, "--naive", json.dumps(table)],
                stdout=subprocess.PIPE,
            )
            assert process.stdout is not None
            output = json.loads(process.stdout.read())
            _, status, usage = os.wait4(process.pid, 0)
            assert status == 0, "the naive loop failed"
            after = meter()
            results["naive"] = {
                **{k: round(after[k] - before[k], 2) for k in after},
                "seconds": round(time.perf_counter() - started, 2),
                "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
                "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
                "principals": output["principals"],
            }
        mine.send("stop")
        emulator.join(timeout=30)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added per answer")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive loop")
    parser.add_argument("--naive", help=argparse.SUPPRESS)  # internal: run the naive loop
    args = parser.parse_args()
    if args.naive:
        naive_loop(json.loads(args.naive))
        return
    sizes = sorted(args.sizes)
    report: dict[str, Any] = {"latency_s": args.latency, "quota_units_per_10s": QUOTA}
    for size in sizes:
        report[str(size)] = measure(size, args.latency, not args.no_naive and size == sizes[0])
    small, large = report[str(sizes[0])], report[str(sizes[-1])]
    ratios: dict[str, Any] = {
        "rss_largest_to_smallest": round(
            large["full"]["peak_rss_mib"] / small["full"]["peak_rss_mib"], 2
        ),
        "nightly_to_full_units_largest": round(
            (large["nightly"]["resource_units"] + large["nightly"]["report_requests"])
            / (large["full"]["resource_units"] + large["full"]["report_requests"]),
            4,
        ),
        "throttled_recert": sum(
            report[str(s)][r]["throttled"] for s in sizes for r in ("full", "nightly")
        ),
    }
    if "naive" in small:
        ratios["naive_units_per_recert_unit_smallest"] = round(
            small["naive"]["resource_units"] / small["full"]["resource_units"], 1
        )
    report["ratios"] = ratios
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
