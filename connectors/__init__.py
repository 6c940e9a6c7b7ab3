"""Provider connectors behind one interface (see `connectors.base`).

SDK imports are lazy: the Okta SDK alone takes seconds to import, so a process only pays
for the providers it talks to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from connectors.base import Connector
from connectors.pacing import Pacer
from connectors.settings import EntraSettings, GoogleSettings, OktaSettings, TenantSettings

Sleeper = Callable[[float], Awaitable[None]]
Now = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def open_connector(
    settings: TenantSettings,
    *,
    sleep: Sleeper = asyncio.sleep,
    now: Now = utc_now,
    pacer: Pacer | None = None,
) -> Connector:
    """The connector for one tenant's settings (read or write credential).

    `sleep` is every wait a connector makes (retries, rate-limit pacing) and `now` its
    clock, so tests and drills inject both. `pacer` keeps the tenant's API calls inside
    the provider's quota: a `RedisPacer` shared by every worker, else each connector paces
    alone in its process.
    """
    if isinstance(settings, OktaSettings):
        from connectors.okta import OktaConnector

        return OktaConnector(settings, sleep=sleep, now=now, pacer=pacer)
    if isinstance(settings, EntraSettings):
        from connectors.entra import EntraConnector

        return EntraConnector(settings, sleep=sleep, now=now, pacer=pacer)
    if isinstance(settings, GoogleSettings):
        from connectors.google import GoogleConnector

        return GoogleConnector(settings, sleep=sleep, now=now, pacer=pacer)
    raise TypeError(f"no connector for {type(settings).__name__}")
