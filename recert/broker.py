"""The Redis that Celery uses as its broker, shared by every process of a deployment:
job locks live there, and so do the API rate-limit buckets all workers spend together.

Whether locks live in Redis depends on the config alone, never on what answers right
now: with a broker configured (`[celery] broker_url` or `RECERT_BROKER_URL`) they do, and
a broker that does not answer stops the run; without one (embedded use) they live in the
database. A CLI run and a worker reading the same config therefore always share a lock.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from connectors import Sleeper
from connectors.pacing import LocalPacer, Pacer, RedisPacer
from recert.config import Settings

log = logging.getLogger(__name__)

_clients: dict[tuple[int, str], Any] = {}  # (pid, url): a forked child opens its own


class BrokerUnavailable(Exception):
    """The configured broker does not answer, so no lock can be taken."""


def broker_configured(settings: Settings) -> bool:
    """True when the config or the environment names a broker (not the embedded default)."""
    return "celery" in settings.model_fields_set


def shown_url(url: str) -> str:
    """The broker URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def broker(settings: Settings) -> Any:
    """A client of the broker's Redis that answered a ping; BrokerUnavailable otherwise."""
    url = settings.celery.broker_url
    key = (os.getpid(), url)
    client = _clients.get(key)
    if client is None:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as error:
        raise BrokerUnavailable(f"the broker {shown_url(url)} does not answer: {error}") from None
    _clients[key] = client
    return client


def pacer_for(
    settings: Settings, tenant: str, *, shared: bool = False, sleep: Sleeper = asyncio.sleep
) -> Pacer:
    """The tenant's rate limiter: in Redis, shared by every worker, when a broker is
    configured (or `shared`, under Celery) and answers; in this process otherwise."""
    if shared or broker_configured(settings):
        try:
            prefix = settings.celery.key_prefix
            return RedisPacer(broker(settings), tenant, sleep=sleep, prefix=prefix)
        except BrokerUnavailable as error:
            log.warning("tenant %s: pacing in this process only: %s", tenant, error)
    return LocalPacer(sleep=sleep)
