"""Issue #16 items 1 and 8: the Okta settings a tenant table gives the connector."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.settings import OKTA_WRITE_SCOPES, OktaSettings
from recert.config import ConfigError, load_settings

TABLE = """
[[tenants]]
name = "okta-prod"
kind = "okta"
org_url = "https://acme.okta.com"
client_id = "0oaREADER"
private_key_file = "reader.pem"
scopes = ["okta.apps.read"]
{read_extra}

[tenants.enforce]
client_id = "0oaWRITER"
private_key_file = "writer.pem"
{write_extra}
"""


def load(
    tmp_path: Path, read_extra: str = "", write_extra: str = ""
) -> tuple[OktaSettings, OktaSettings]:
    for name in ("reader.pem", "writer.pem"):
        (tmp_path / name).write_text("-----BEGIN PRIVATE KEY-----\n")
    path = tmp_path / "recert.toml"
    path.write_text(TABLE.format(read_extra=read_extra, write_extra=write_extra))
    tenant = load_settings(path, environ={}).tenants[0]
    assert isinstance(tenant.read, OktaSettings)
    assert isinstance(tenant.write_settings, OktaSettings)
    return tenant.read, tenant.write_settings


def test_enforce_without_scopes_gets_the_write_scopes(tmp_path: Path) -> None:
    read, write = load(tmp_path)
    assert read.scopes == ("okta.apps.read",)
    assert write.scopes == OKTA_WRITE_SCOPES
    assert {"okta.apps.manage", "okta.appGrants.manage", "okta.aiAgents.manage"} <= set(
        write.scopes
    )


def test_enforce_scopes_given_are_kept(tmp_path: Path) -> None:
    _, write = load(tmp_path, write_extra='scopes = ["okta.apps.manage"]')
    assert write.scopes == ("okta.apps.manage",)


def test_dpop_is_on_unless_switched_off(tmp_path: Path) -> None:
    read, write = load(tmp_path, read_extra="dpop = false")
    assert read.dpop is False
    assert write.dpop is True


def test_a_bad_dpop_value_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tenants\[0\] \(okta-prod\)\.dpop"):
        load(tmp_path, read_extra='dpop = "sometimes"')
