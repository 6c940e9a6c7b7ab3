"""Step 6: enforcement. Plan what is due, apply the safety rules, act, and undo on request.

The plan, per tenant: disable an app that is overdue and that nobody kept, disable an app
its owner chose to revoke, remove the permissions an owner dropped, and revoke a user's
own consent when they chose revoke. Every candidate passes the safety rules (RULES); a
refusal names the rule. A whole tenant is blocked when its last complete discovery is
stale or when the plan would disable more than the blast-radius caps allow.

The tenant's mode decides what a run does: `off` nothing, `dry-run` (the default) records
the plan as an audit event, `enforce` carries it out. Each change is one small operation
that survives a crash anywhere: claim the action's row (unique by idempotency key) and
commit, call the provider (already done counts as done), record the outcome with its
audit event, and queue the notice later from the recorded rows. A re-run finds the rows
and changes nothing twice.
"""

from recert.enforcement.acting import EnforceSummary, enforce, enforce_tenant
from recert.enforcement.planning import (
    RULES,
    PlannedAction,
    Refusal,
    TenantPlan,
    own_identities,
    plan,
    plan_tenant,
    unused_days,
)
from recert.enforcement.undoing import ReenableRefused, ReenableResult, reenable

__all__ = [
    "RULES",
    "EnforceSummary",
    "PlannedAction",
    "ReenableRefused",
    "ReenableResult",
    "Refusal",
    "TenantPlan",
    "enforce",
    "enforce_tenant",
    "own_identities",
    "plan",
    "plan_tenant",
    "reenable",
    "unused_days",
]
