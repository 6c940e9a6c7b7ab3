"""`recert web` logs each request, with the signed link tokens in its paths redacted.

A review or report link is a bearer credential: whoever reads it in a log could open the
page, so `/review/<token>` and `/reports/<token>` are logged as `/review/[token]`.
"""

from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "uvicorn.access"
_TOKEN_PATH = re.compile(r"^/(review|reports)/[^/?#]+")


def redact(path: str) -> str:
    return _TOKEN_PATH.sub(r"/\1/[token]", path)


class RedactTokens(logging.Filter):
    """Rewrites the path argument of uvicorn's access records (client, method, path, ...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > 2 and isinstance(args[2], str):
            record.args = (*args[:2], redact(args[2]), *args[3:])
        return True


def log_requests() -> None:
    """Turn on uvicorn's access log (after its own logging setup), tokens redacted."""
    access = logging.getLogger(ACCESS_LOGGER)
    access.setLevel(logging.INFO)
    if not any(isinstance(f, RedactTokens) for f in access.filters):
        access.addFilter(RedactTokens())
