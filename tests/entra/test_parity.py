"""The inventory of a 2,000-principal tenant is the one Recert produced before the rework.

`data/parity-inventory-main-05ef8ef.json.gz` is `recert inventory --format json` as main at
05ef8ef (before issues 17 and 23) printed it after `recert discover`, both run by
`inventory_of` below on `build(seed=5, size=2000)` at RECERT_NOW=SEED_NOW. The seed still
makes the same tenant, plus the principals `add_additions` makes (agent identities, ...),
which were not there then and are left out of the comparison.

What legitimately differs, and nothing else:
- `credentials[].created_at` is null: it was Graph's startDateTime, which is when a
  credential starts to be valid, not when it was made (issue 17, item 7);
- with it, the risk reason "a secret/certificate valid for more than N days" is measured
  from now on, so it may be gone (never added), and `risk` may drop where it was the only
  reason at its level;
- a managed identity's certificate is `managed_certificate` (Azure rotates it);
- `credentials[].display_name` is new;
- grants with the same resource and permission are listed in grant-id order, and the ids
  changed (derived delegated grant ids; assignment ids carry resource and role);
- a high-risk permission is high whatever the consent, its reason naming the consent kind
  ("holds Mail.Read (user consent)" for "users consented to Mail.Read", issue 20 item 7),
  so `risk` may rise where such a reason is present;
- keys added to the JSON contract since: `last_use_unknown` and `seen_since` (Google);
- "a secret valid for more than N days" now names the credential ("a client secret ...").
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import tomli_w

from sandbox.entra import SEED_NOW, EntraEmulator, build
from sandbox.tls import SandboxCA
from tests.entra.conftest import served

RECORDED = Path(__file__).parent / "data" / "parity-inventory-main-05ef8ef.json.gz"
LIFETIME = " valid for more than "
LEVELS = {"low": 0, "medium": 1, "high": 2}
ADDED_KEYS = ("last_use_unknown", "seen_since")
USER_CONSENT = re.compile(r"^holds (.+) \(user consent\)$")


def old_wording(reason: str) -> str:
    """A reason as the recorded run worded it (issue 20 reworded these two)."""
    reason = reason.replace("a client secret valid for", "a secret valid for")
    return USER_CONSENT.sub(r"users consented to \1", reason)


def inventory_of(app: EntraEmulator, url: str, ca: SandboxCA, folder: Path) -> list[Any]:
    """`recert discover`, then `recert inventory --format json`, as an operator runs them."""
    table = app.tenant_table("entra-parity", url, ca.ca_bundle, folder / "secrets")
    config = folder / "recert.toml"
    database = {"url": f"sqlite:///{folder / 'recert.db'}"}
    config.write_text(
        tomli_w.dumps({"database": database, "iam_email": "iam@example.com", "tenants": [table]})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECERT_", "OKTA_"))}
    env.update(RECERT_CONFIG=str(config), RECERT_NOW=SEED_NOW.isoformat())
    for command in (["discover"], ["inventory"]):
        result = subprocess.run(
            [sys.executable, "-m", "recert", *command, "--format", "json"],
            env=env,
            cwd=folder,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def comparable(entry: dict[str, Any]) -> dict[str, Any]:
    """An inventory entry without what legitimately changed (see the module docstring)."""
    return {
        **{k: v for k, v in entry.items() if k not in ADDED_KEYS},
        "credentials": sorted(
            (c["type"].replace("managed_certificate", "certificate"), c["expires_at"])
            for c in entry["credentials"]
        ),
        "grants": sorted(json.dumps(g, sort_keys=True) for g in entry["grants"]),
        "risk_reasons": sorted(old_wording(r) for r in entry["risk_reasons"] if LIFETIME not in r),
        "risk": None,
    }


def test_the_inventory_is_the_same_as_before(sandbox_ca: SandboxCA, tmp_path: Path) -> None:
    app = build(seed=5, size=2000)
    with served(app, sandbox_ca) as url:
        now = {e["external_id"]: e for e in inventory_of(app, url, sandbox_ca, tmp_path)}
    with gzip.open(RECORDED, "rt") as recorded:
        before = {e["external_id"]: e for e in json.load(recorded)}
    assert len(before) == 2100
    assert set(now) - set(before) == app.tenant.truth.added
    for external_id, old in before.items():
        new = now[external_id]
        assert comparable(new) == comparable(old), external_id
        if LEVELS[new["risk"]] > LEVELS[old["risk"]]:
            assert any(USER_CONSENT.match(r) for r in new["risk_reasons"]), external_id
        elif new["risk"] != old["risk"]:
            assert any(LIFETIME in r for r in old["risk_reasons"]), external_id
        assert all(c["created_at"] is None for c in new["credentials"])
    changed = sum(
        sorted(old_wording(r) for r in now[i]["risk_reasons"]) != sorted(e["risk_reasons"])
        for i, e in before.items()
    )
    assert changed < 50  # the credential-lifetime reasons only
