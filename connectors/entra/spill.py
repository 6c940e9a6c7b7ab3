"""A scratch table on disk for what a discovery round reads early and needs later.

App registrations are listed before the service principals they pair with, and sign-in
rows before the principals they describe. Parked here instead of in dicts, they cost a few
megabytes of SQLite cache whatever the tenant's size, so memory does not grow with it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

BATCH = 1000
IN_CHUNK = 500  # keys per IN (...) lookup


class Spill:
    """Key -> JSON value, in named buckets; deleted when closed."""

    def __init__(self) -> None:
        handle, self.path = tempfile.mkstemp(prefix="recert-entra-", suffix=".sqlite")
        os.close(handle)
        self.db = sqlite3.connect(self.path)
        self.db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-4000;"
            "CREATE TABLE parked (bucket TEXT, key TEXT, value TEXT, PRIMARY KEY (bucket, key))"
            " WITHOUT ROWID;"
        )

    def close(self) -> None:
        self.db.close()
        os.unlink(self.path)

    def put(self, bucket: str, items: Iterable[tuple[str, Any]]) -> None:
        self.put_texts(bucket, ((key, json.dumps(value)) for key, value in items))

    def put_texts(self, bucket: str, items: Iterable[tuple[str, str]]) -> None:
        """Values that are strings already, stored as they are."""
        self.db.executemany(
            "INSERT OR REPLACE INTO parked VALUES (?, ?, ?)",
            ((bucket, key, value) for key, value in items),
        )

    def get_many(self, bucket: str, keys: Iterable[str]) -> dict[str, Any]:
        return {key: json.loads(value) for key, value in self.texts(bucket, keys).items()}

    def texts(self, bucket: str, keys: Iterable[str]) -> dict[str, str]:
        wanted = sorted(set(keys))
        found: dict[str, str] = {}
        for start in range(0, len(wanted), IN_CHUNK):
            chunk = wanted[start : start + IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT key, value FROM parked WHERE bucket = ? AND key IN ({marks})",  # noqa: S608
                (bucket, *chunk),
            )
            found.update(rows)
        return found

    def values(self, bucket: str) -> Iterator[list[Any]]:
        """Everything left in `bucket`, in batches, in key order."""
        after = ""
        while True:
            rows = self.db.execute(
                "SELECT key, value FROM parked WHERE bucket = ? AND key > ? ORDER BY key LIMIT ?",
                (bucket, after, BATCH),
            ).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            yield [json.loads(value) for _, value in rows]
