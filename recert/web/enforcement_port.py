"""The console's seam to enforcement (DESIGN.md step 6), which ships as its own module.

The console needs two calls from `recert.enforcement`: `plan` (what a run would do now,
one TenantPlan per tenant, `as_dict()` in the `recert enforce --plan --format json`
shape) and `reenable` (restore an app and audit who did it and why). A build without
that module shows the enforcement page's history and says the plan is unavailable.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Protocol, cast

from sqlalchemy import Engine
from sqlmodel import Session

from recert.clock import Clock
from recert.config import Settings


class TenantPlan(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


class Enforcement(Protocol):
    def plan(
        self,
        session: Session,
        settings: Settings,
        clock: Clock,
        tenants: Sequence[str] | None = None,
    ) -> Sequence[TenantPlan]: ...

    def reenable(
        self,
        engine: Engine,
        settings: Settings,
        clock: Clock,
        tenant: str,
        external_id: str,
        reason: str,
        actor: str,
    ) -> Any: ...


def installed() -> Enforcement | None:
    try:
        module = importlib.import_module("recert.enforcement")
    except ModuleNotFoundError as missing:
        if missing.name != "recert.enforcement":
            raise  # the module exists but something it imports does not: a real bug
        return None
    return cast(Enforcement, module)
