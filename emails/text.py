"""Untrusted text made visible: the one filter emails and web pages share.

Names from identity providers may hide bidirectional overrides (U+202E turns
"invoice" U+202E "gpj.exe" into what reads as "invoiceexe.jpg"), zero-width or control
characters. Each one is shown by its code point instead, so a reader sees what is there.
"""

from __future__ import annotations

import unicodedata

# Line breaks must not forge new lines; every other invisible character (controls, bidi
# overrides and isolates, zero-width, surrogates) is shown by its code point.
LINE_BREAKS = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x85\u2028\u2029")
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _visible_char(char: str) -> str:
    if char in LINE_BREAKS:
        return " "
    if unicodedata.category(char) in _INVISIBLE:
        return f"[U+{ord(char):04X}]"
    return char


def visible(text: str) -> str:
    """`text` with every invisible or direction-changing character shown as [U+XXXX]."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(_visible_char(char) for char in text)


def finalize(value: object) -> object:
    """A Jinja `finalize` hook: every plain string a template prints is made visible
    (markup a template was handed on purpose, like an SVG chart, is left as it is)."""
    if isinstance(value, str) and not hasattr(value, "__html__"):
        return visible(value)
    return value
