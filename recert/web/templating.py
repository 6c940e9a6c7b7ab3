"""The Jinja environment every page of the site renders with.

Templates autoescape, and `finalize` makes every printed string visible: bidirectional
overrides, zero-width and control characters from identity providers show as [U+XXXX]
instead of reordering or hiding text.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from emails.text import finalize
from recert.reports import NOTHING, short_name

TEMPLATES = Path(__file__).parent / "templates"


def when(moment: datetime) -> str:
    return f"{moment:%a %d %b %Y %H:%M} UTC"


def day(moment: datetime) -> str:
    return f"{moment:%d %b %Y}"


def minute(moment: datetime | None) -> str:
    """'2026-12-04 09:30 UTC', for tables."""
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else NOTHING


def environment() -> Environment:
    templates = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=finalize,
    )
    templates.filters.update(when=when, day=day, minute=minute, short=short_name)
    return templates
