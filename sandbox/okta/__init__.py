"""Okta org emulator: `build()` seeds one; serve it with `sandbox.server.serving`."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sandbox.okta.app import REALISTIC_LIMITS, Clock, OktaEmulator
from sandbox.okta.seed import BUILTIN_APPS, PLACEHOLDER_BASE, OrgData, Truth, generate

__all__ = ["BUILTIN_APPS", "REALISTIC_LIMITS", "OktaEmulator", "OrgData", "Truth", "build"]


def build(
    seed: int = 0,
    size: int = 60,
    *,
    clock: Clock = time.time,
    limits: dict[str, int] | None = None,
    oauth_share: float = 0.45,
) -> OktaEmulator:
    """A seeded org of `size` apps (all sign-on modes, 4 built-ins, 3 malformed records),
    API tokens, users (some DEPROVISIONED) and 90 days of System Log, deterministic for a
    seed and a clock. `limits` overrides the per-minute rate-limit buckets."""
    now = datetime.fromtimestamp(clock(), UTC)
    org = generate(seed, size, now, PLACEHOLDER_BASE, oauth_share=oauth_share)
    return OktaEmulator(org, clock=clock, limits=limits)
