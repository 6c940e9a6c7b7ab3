"""Microsoft Graph / Entra ID emulator: `build()` a seeded tenant, serve it with `serving`."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from sandbox.entra.app import EntraEmulator
from sandbox.entra.seed import SEED_NOW, Tenant, Truth, generate

__all__ = ["SEED_NOW", "EntraEmulator", "Tenant", "Truth", "build"]


def build(
    seed: int = 0,
    size: int = 2000,
    *,
    malformed: int = 0,
    delta_page_size: int = 200,
    now: datetime = SEED_NOW,
    additions: bool = True,
    clock: Callable[[], float] = time.monotonic,
    audit_now: Callable[[], datetime] = lambda: datetime.now(UTC),
    **mix: float,
) -> EntraEmulator:
    """An emulator of a tenant with about `size` service principals (deterministic per seed).

    `mix` overrides the weights of first_party, microsoft_tenant, managed_identity,
    third_party, tenant_app and oauth_app_only (share of app registrations with no SP).
    `clock` drives the throttling buckets and `audit_now` stamps audit events of changes
    made later; `additions=False` leaves out agent identities and the other additions.
    """
    tenant = generate(seed, size, malformed, now, additions=additions, **mix)
    return EntraEmulator(tenant, delta_page_size=delta_page_size, clock=clock, now=audit_now)
