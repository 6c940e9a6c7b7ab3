"""A Redis lock per (job, tenant) so two runs of the same job never overlap.

It expires on its own (a killed worker cannot hold it forever) and is released only by
the holder that took it (a compare-and-delete in one Lua call).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class AlreadyRunning(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"{name} is already running")
        self.name = name


@contextmanager
def singleton(
    client: Any, name: str, ttl_seconds: int, prefix: str = "recert:lock:"
) -> Iterator[str]:
    """Hold `name` for the block, or raise AlreadyRunning if someone else holds it."""
    key, token = prefix + name, uuid.uuid4().hex
    if not client.set(key, token, nx=True, ex=ttl_seconds):
        raise AlreadyRunning(name)
    try:
        yield token
    finally:
        client.eval(_RELEASE, 1, key, token)


def take(client: Any, name: str, ttl_seconds: int, prefix: str = "recert:lock:") -> str | None:
    """Take `name` for a job that spans tasks; the token releases it, None if held."""
    token = uuid.uuid4().hex
    return token if client.set(prefix + name, token, nx=True, ex=ttl_seconds) else None


def give_back(client: Any, name: str, token: str, prefix: str = "recert:lock:") -> None:
    """Release what `take` returned; a lock someone else holds stays theirs."""
    client.eval(_RELEASE, 1, prefix + name, token)
