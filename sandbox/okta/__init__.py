"""Okta org emulator: `build()` seeds one; serve it with `sandbox.server.serving`."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sandbox.okta.app import REALISTIC_LIMITS, Clock, OktaEmulator
from sandbox.okta.seed import (
    BUILTIN_APPS,
    PLACEHOLDER_BASE,
    QUIET,
    OrgData,
    Truth,
    Volume,
    generate,
)

__all__ = [
    "BUILTIN_APPS",
    "REALISTIC_LIMITS",
    "OktaEmulator",
    "OrgData",
    "Truth",
    "Volume",
    "build",
]


def build(
    seed: int = 0,
    size: int = 60,
    *,
    clock: Clock = time.time,
    limits: dict[str, int] | None = None,
    oauth_share: float = 0.45,
    api_tokens: int | None = None,
    agents: int = 4,
    volume: Volume = QUIET,
    window: int = 60,
) -> OktaEmulator:
    """A seeded org of `size` apps (all sign-on modes, 6 built-ins, 3 malformed records),
    API tokens, users and groups (some DEPROVISIONED), `agents` AI agents and 120 days of
    System Log (90 served), deterministic for a seed and a clock. `limits` overrides
    per-window rate-limit buckets; `window` is their length in seconds."""
    now = datetime.fromtimestamp(clock(), UTC)
    org = generate(
        seed,
        size,
        now,
        PLACEHOLDER_BASE,
        oauth_share=oauth_share,
        api_tokens=api_tokens,
        agents=agents,
        volume=volume,
    )
    return OktaEmulator(org, clock=clock, limits=limits, window=window)
