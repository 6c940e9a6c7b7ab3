"""Issue #16 items 6 and 7: real client credentials, user consents and Okta's built-ins."""

from __future__ import annotations

import pytest

from connectors.base import Consent, GrantRef, NotReversible, PrincipalKind, PrincipalRef
from sandbox.okta import BUILTIN_APPS
from tests.okta.conftest import Org, collect, merged

pytestmark = pytest.mark.anyio


async def test_client_secrets_and_keys_come_with_their_dates(org: Org) -> None:
    truth = org.emulator.truth
    records = merged(await collect(org.connector()))
    secrets: dict[str, set[str]] = {}
    keys: dict[str, set[str]] = {}
    for credential in records["credentials"]:
        owner, _, rest = credential.credential_id.partition("/")
        if credential.type == "secret":
            secrets.setdefault(owner, set()).add(rest.removeprefix("secret/"))
            assert credential.created_at is not None, "a secret's age must show"
        if credential.type == "jwks" and owner in truth.oauth_apps:
            keys.setdefault(owner, set()).add(rest.removeprefix("jwks/"))
            assert credential.created_at is not None
    assert secrets == truth.secrets
    assert keys == {app: found for app, found in truth.app_keys.items() if found}
    assert any(len(found) == 2 for found in secrets.values()), "a second live secret shows"
    paths = {r.path for r in org.emulator.requests}
    some_app = next(iter(truth.secrets))
    assert f"/api/v1/apps/{some_app}/credentials/secrets" in paths


async def test_end_user_grants_are_user_consents_that_cannot_be_recreated(org: Org) -> None:
    truth = org.emulator.truth
    assert truth.user_grants
    records = merged(await collect(org.connector()))
    consented = {
        g.principal_id: {g.permission: g.consenting_user}
        for g in records["grants"]
        if g.consent == Consent.USER
    }
    assert consented == truth.user_grants
    app_id, scopes = next(iter(truth.user_grants.items()))
    grant = next(
        g for g in records["grants"] if g.principal_id == app_id and g.consent == Consent.USER
    )
    ref = GrantRef(
        PrincipalRef(app_id, PrincipalKind.OAUTH_APP),
        grant.grant_id,
        grant.permission,
        grant.consenting_user,
    )
    connector = org.connector(write=True)
    try:
        snapshot = await connector.revoke_grant(ref)
        assert grant.grant_id not in org.emulator.org.grants[app_id]
        assert snapshot["source"] == "END_USER"
        assert snapshot["userId"] == scopes[grant.permission]
        with pytest.raises(NotReversible, match="consent again"):
            await connector.restore_grant(ref, snapshot)
    finally:
        await connector.aclose()


async def test_okta_built_ins_are_platform_owned(org: Org) -> None:
    records = merged(await collect(org.connector()))
    by_name = {p.raw["name"]: p for p in records["principals"] if p.kind == PrincipalKind.OAUTH_APP}
    for name in ("okta_atspoke_sso", "okta_oin_submission_tester_app", "saasure"):
        assert name in BUILTIN_APPS
        assert by_name[name].platform_owned, name
    assert "oauthClient" not in next(
        app["credentials"] for app in org.emulator.org.apps.values() if app["name"] == "saasure"
    )
    grants_read = {r.path for r in org.emulator.requests if r.path.endswith("/grants")}
    assert not any(
        by_name[n].external_id in p for n in BUILTIN_APPS if n in by_name for p in grants_read
    )
