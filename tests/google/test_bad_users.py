"""One bad user never aborts a chunk: recorded against that user, skipped, kept."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest

from connectors.base import Consent
from sandbox.google.seed import DEPARTED_MANAGER, FOREIGN_MANAGERS
from tests.google.conftest import Tenant
from tests.google.truth import fold


def test_tokens_list_failing_for_one_user_each_way(
    small: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    holders = [u for u in small.emulator.seed.users if u.tokens]
    broken = {holders[0].id: 400, holders[1].id: 403, holders[2].id: 404}
    for user_id, status in broken.items():
        small.emulator.break_tokens(user_id, status)
    pages = small.discover(users_per_chunk=500)
    stream = fold(pages)
    checkpoint = pages[-1].checkpoint
    assert checkpoint is not None
    assert checkpoint.full
    assert checkpoint.unread_consents == set(broken)
    assert {f"user_tokens:{user_id}" for user_id in broken} <= set(stream.skipped)
    consenters = {g.consenting_user for g in stream.grants if g.consent == Consent.USER}
    assert consenters.isdisjoint(broken)
    readable = {u.id for u in holders[3:]}
    assert readable <= consenters
    for user_id in broken:
        assert f"user_tokens id='{user_id}'" in caplog.text


def test_managers_outside_the_domain_are_answered_403_or_400(small: Tenant) -> None:
    stream = fold(small.discover())
    seed = small.emulator.seed
    by_manager = {u.manager_email: u for u in seed.users if u.manager_email}
    for manager in (*FOREIGN_MANAGERS, DEPARTED_MANAGER):
        assert stream.people[by_manager[manager].id].manager_id is None
    lookups = [
        unquote(r.path.rsplit("/", 1)[-1])
        for r in small.emulator.requests
        if re.fullmatch(r"/admin/directory/v1/users/[^/]+", r.path)
    ]
    assert sorted(lookups) == sorted((*FOREIGN_MANAGERS, DEPARTED_MANAGER)), (
        "only managers missing from the listing are looked up, once each"
    )
