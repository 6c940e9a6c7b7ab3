"""Microsoft Entra ID connector (msgraph-sdk + azure-identity), see PERMISSIONS.md."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from connectors.base import GrantRef, Page, PrincipalRef, Snapshot
from connectors.entra import act
from connectors.entra.client import GraphClient
from connectors.entra.discover import Discovery
from connectors.pacing import LocalPacer, Pacer
from connectors.settings import EntraSettings

__all__ = ["EntraConnector"]

log = logging.getLogger("connectors.entra")


class EntraConnector:
    """One Entra tenant. Built with the read credential for discovery, or with the
    tenant's `enforce` credential for disable / enable / revoke / restore."""

    def __init__(
        self,
        settings: EntraSettings,
        *,
        sleep: Callable[[float], Awaitable[None]],
        now: Callable[[], datetime],
        pacer: Pacer | None = None,
    ) -> None:
        self.tenant = settings.name
        self.now = now
        self.pacer = pacer or LocalPacer(sleep=sleep)
        self.full_every = timedelta(days=settings.full_sync_days)
        self.client = GraphClient(settings, sleep=sleep, pacer=self.pacer)

    async def discover(self, cursor: Mapping[str, Any] | None = None) -> AsyncIterator[Page]:
        async for page in Discovery(self.client, self.now(), self.full_every).run(cursor):
            yield page
        usage = self.client.usage
        log.info(
            "tenant %s: %d requests, %d resource units, %d answered 429",
            self.tenant,
            usage.requests,
            usage.resource_units,
            usage.throttled,
        )

    async def disable(self, ref: PrincipalRef) -> Snapshot:
        return await act.disable(self.client, ref)

    async def enable(self, ref: PrincipalRef, snapshot: Snapshot) -> None:
        await act.enable(self.client, ref, snapshot)

    async def revoke_grant(self, grant: GrantRef) -> Snapshot:
        return await act.revoke_grant(self.client, grant)

    async def restore_grant(self, grant: GrantRef, snapshot: Snapshot) -> None:
        await act.restore_grant(self.client, grant, snapshot)

    async def aclose(self) -> None:
        await self.client.aclose()
