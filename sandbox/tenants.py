"""Three emulated tenants (Okta, Entra, Google) on loopback, and a config that points at them.

Shared by the end-to-end tests and `recert demo`, so both run Recert exactly as an operator
would: a TOML file, real SDKs, real TLS.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from sandbox import entra, google, okta
from sandbox.okta.oidc import OidcProvider
from sandbox.okta.oidc import install as install_oidc
from sandbox.server import EmulatorServer, serving
from sandbox.tls import SandboxCA, make_ca

# Generous buckets: a demo or test re-run within a minute must not wait for Okta's window.
UNHURRIED_OKTA_LIMITS = dict.fromkeys(okta.REALISTIC_LIMITS, 10_000)
UNHURRIED_GOOGLE_QUOTA = 100_000  # queries a minute; the config table says the same


@dataclass(frozen=True)
class Sizes:
    okta_apps: int = 60
    entra_principals: int = 70
    google_principals: int = 40
    google_users: int = 200


@dataclass
class SandboxTenants:
    ca: SandboxCA
    okta: okta.OktaEmulator
    entra: entra.EntraEmulator
    google: google.GoogleEmulator
    oidc: OidcProvider  # the Okta org as the IAM console's sign-in provider
    servers: dict[str, EmulatorServer] = field(default_factory=dict)
    tables: list[dict[str, Any]] = field(default_factory=list)

    def config(self, **top_level: Any) -> str:
        """A complete recert.toml: the three tenants plus the given top-level tables."""
        return tomli_w.dumps({**top_level, "tenants": self.tables})


@contextmanager
def running_tenants(
    directory: Path, sizes: Sizes = Sizes(), seed: int = 7, now: datetime | None = None
) -> Iterator[SandboxTenants]:
    """Start the three emulators over HTTPS; secrets and the CA go under `directory`."""
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    okta_clock = moment.timestamp if now else time.time  # a pinned clock stays pinned
    ca = make_ca(directory)
    okta_org = okta.build(seed, sizes.okta_apps, clock=okta_clock, limits=UNHURRIED_OKTA_LIMITS)
    tenants = SandboxTenants(
        ca=ca,
        okta=okta_org,
        entra=entra.build(seed, sizes.entra_principals, now=moment),
        google=google.build(
            seed,
            sizes.google_principals,
            users=sizes.google_users,
            now=moment,
            quota_per_minute=UNHURRIED_GOOGLE_QUOTA,
        ),
        oidc=install_oidc(okta_org),
    )
    secrets = directory / "secrets"
    with ExitStack() as stack:
        for name, app in (
            ("okta-demo", tenants.okta),
            ("entra-demo", tenants.entra),
            ("google-demo", tenants.google),
        ):
            server = stack.enter_context(serving(app, ca))
            tenants.servers[name] = server
            tenants.tables.append(app.tenant_table(name, server.url, ca.ca_bundle, secrets))
        yield tenants
