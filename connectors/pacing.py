"""Pacing: every worker of a tenant stays inside a provider's quota, together.

A quota such as "2,400 queries per minute" or "8,000 resource units per 10 s" becomes a
token bucket per (tenant, bucket): units refill evenly at `per_window / window` per second
and at most `burst` may be spent at once, so in any window no more than `per_window +
burst` are spent. `Limit.for_quota` splits a quota, less the share left free for other
integrations, between the two.

Two stores of the same bucket: `LocalPacer` in the process (one CLI run), `RedisPacer`
in Redis (every Celery worker of the deployment shares it). Both wait through the
injected sleeper, and both let a provider's own "wait N seconds" hold every caller off.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

Sleeper = Callable[[float], Awaitable[None]]
BURST_SHARE = 0.1  # of the usable quota, spendable at once; the rest refills evenly
EPSILON = 1e-6  # float slack, so a wait that refilled just enough is not repeated forever


@dataclass(frozen=True, slots=True)
class Limit:
    per_window: float  # units that refill over one window
    window: float  # seconds
    burst: float  # most units spendable at once

    @property
    def rate(self) -> float:
        return self.per_window / self.window

    @classmethod
    def for_quota(cls, quota: float, window: float, reserve: float = 0.0) -> Limit:
        """A bucket that never spends more than `quota * (1 - reserve)` in any window."""
        usable = quota * (1.0 - reserve)
        burst = max(1.0, usable * BURST_SHARE)
        return cls(per_window=max(1.0, usable - burst), window=window, burst=burst)


class Pacer(Protocol):
    async def acquire(self, key: str, limit: Limit, cost: float = 1.0) -> float:
        """Wait until `cost` units of bucket `key` are free and take them; returns the wait."""
        ...

    def charge(self, key: str, limit: Limit, cost: float) -> None:
        """Take units without waiting (a cost learnt from the response); may go negative."""
        ...

    def hold_off(self, key: str, seconds: float) -> None:
        """The provider said to wait: nobody takes from `key` for `seconds`."""
        ...


class LocalPacer:
    """Buckets held in this process; thread-safe, for one run of one command."""

    def __init__(
        self, *, sleep: Sleeper = asyncio.sleep, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated at)
        self._blocked: dict[str, float] = {}  # key -> clock value until which all wait

    async def acquire(self, key: str, limit: Limit, cost: float = 1.0) -> float:
        waited = 0.0
        while (wait := self._take(key, limit, cost)) > 0:
            await self._sleep(wait)
            waited += wait
        return waited

    def charge(self, key: str, limit: Limit, cost: float) -> None:
        with self._lock:
            tokens, now = self._refilled(key, limit)
            self._buckets[key] = (tokens - cost, now)

    def hold_off(self, key: str, seconds: float) -> None:
        with self._lock:
            until = self._clock() + seconds
            self._blocked[key] = max(until, self._blocked.get(key, until))

    def _take(self, key: str, limit: Limit, cost: float) -> float:
        with self._lock:
            blocked = self._blocked.get(key, 0.0) - self._clock()
            if blocked > 0:
                return blocked
            tokens, now = self._refilled(key, limit)
            if tokens + EPSILON >= min(cost, limit.burst):
                self._buckets[key] = (tokens - cost, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (min(cost, limit.burst) - tokens) / limit.rate

    def _refilled(self, key: str, limit: Limit) -> tuple[float, float]:
        now = self._clock()
        tokens, at = self._buckets.get(key, (limit.burst, now))
        return min(limit.burst, tokens + (now - at) * limit.rate), now


# One round trip per attempt; Redis's own clock, so every worker agrees on the time.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local blocked = tonumber(redis.call('HGET', KEYS[1], 'blocked') or '0')
if blocked > now then return tostring(blocked - now) end
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or ARGV[2])
local at = tonumber(redis.call('HGET', KEYS[1], 'at') or tostring(now))
tokens = math.min(burst, tokens + (now - at) * rate)
local need = math.min(cost, burst)
local wait = 0
if ARGV[4] == '1' or tokens + 0.000001 >= need then tokens = tokens - cost
else wait = (need - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], ARGV[5])
return tostring(wait)
"""
_HOLD_OFF = """
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
local blocked = tonumber(redis.call('HGET', KEYS[1], 'blocked') or '0')
if until_ > blocked then redis.call('HSET', KEYS[1], 'blocked', tostring(until_)) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


class RedisPacer:
    """Buckets kept in Redis under `prefix + tenant + key`, shared by every worker."""

    def __init__(
        self, client: Any, tenant: str, *, sleep: Sleeper = asyncio.sleep, prefix: str = ""
    ) -> None:
        self._client = client
        self._prefix = f"{prefix}recert:pace:{tenant}:"
        self._sleep = sleep

    async def acquire(self, key: str, limit: Limit, cost: float = 1.0) -> float:
        waited = 0.0
        while (wait := self._take(key, limit, cost, force=False)) > 0:
            await self._sleep(wait)
            waited += wait
        return waited

    def charge(self, key: str, limit: Limit, cost: float) -> None:
        self._take(key, limit, cost, force=True)

    def hold_off(self, key: str, seconds: float) -> None:
        self._client.eval(_HOLD_OFF, 1, self._prefix + key, seconds, _ttl(seconds))

    def _take(self, key: str, limit: Limit, cost: float, *, force: bool) -> float:
        ttl = _ttl(limit.window)
        args = (limit.rate, limit.burst, cost, "1" if force else "0", ttl)
        return float(self._client.eval(_TAKE, 1, self._prefix + key, *args))


def _ttl(seconds: float) -> int:
    """Idle buckets expire: a full bucket and a missing one are the same thing."""
    return int(seconds) + 60
