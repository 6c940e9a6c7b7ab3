"""Google Workspace + Cloud emulator: `build()` a seeded tenant, serve it with `sandbox.server`.

`build(seed, size, users=..., projects=...)` returns a `GoogleEmulator` whose `seed` is the
ground truth; `tenant_table()` gives the config table that points Recert at it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sandbox.google.app import GoogleEmulator
from sandbox.google.seed import Seed, generate

__all__ = ["GoogleEmulator", "Seed", "build"]


def build(
    seed: int = 0,
    size: int = 60,
    *,
    users: int | None = None,
    projects: tuple[str, ...] = ("acme-prod", "acme-data"),
    now: datetime | None = None,
    quota_per_minute: int = 2400,
    quota_window: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
    **mix: Any,
) -> GoogleEmulator:
    """A deterministic tenant: `size` principals, `users` people (default 5 per principal).

    `mix` tunes the split: `dwd_share` (default 0.1) and `service_account_share` (0.3);
    the rest are third-party apps users granted tokens to; `edition` is `enterprise`
    (logs app use) or `business` (does not). The Admin SDK quota is `quota_per_minute`
    per `quota_window` seconds of `clock` (scale the window down to shorten benchmarks).
    """
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    data = generate(seed, size, users if users is not None else 5 * size, projects, moment, **mix)
    return GoogleEmulator(
        data, quota_per_minute=quota_per_minute, quota_window=quota_window, clock=clock
    )
