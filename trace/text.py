"""Text from a trace, made safe to show: the one owner of "escape control
characters for a terminal" and "cap an echoed value".

A trace is untrusted input: a `comm`, a probe name, a stack symbol, a header
key or a cell echoed in an error message may hold ESC (terminal commands: clear
the screen, set the window title), CR and BS (overwrite what was printed),
NUL, DEL, C1 controls (U+009B is a one-byte CSI on many terminals) or
bidirectional overrides (U+202E reverses the text that follows). Everything
pageref prints from a trace goes through `for_terminal` (or `shown` for an
echoed value); the JSON output and the HTML report escape by their own rules.
"""

from __future__ import annotations

import re
from typing import Any

# C0 (including TAB, CR, BS, ESC, NUL), DEL, C1 (including U+009B CSI), and the
# bidirectional embedding/override/isolate controls, which reorder the text
# around them on a terminal just as in a browser.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# The same set, but keeping the newline: for a whole block of output.
_CONTROL_BUT_NL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f"
                             "\u202a-\u202e\u2066-\u2069]")
# Lone surrogates (JSON may escape one) cannot be written as UTF-8 at all.
_SURROGATE = re.compile("[\ud800-\udfff]")

# How many characters of an untrusted value an error message echoes.
ECHO_CHARS = 80


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def escape_controls(s: str) -> str:
    """`s` with every control character (and lone surrogate) as \\xNN / \\uNNNN."""
    s = _CONTROL.sub(_escape, s)
    return _SURROGATE.sub(_escape, s) if _SURROGATE.search(s) else s


def for_terminal(text: str) -> str:
    """A block of output (newlines kept) with every other control escaped."""
    text = _CONTROL_BUT_NL.sub(_escape, text)
    return _SURROGATE.sub(_escape, text) if _SURROGATE.search(text) else text


def cap(s: str, limit: int = ECHO_CHARS) -> str:
    """At most `limit` characters of `s`, saying how many more there were."""
    if len(s) <= limit:
        return s
    return f"{s[:limit]}… ({len(s) - limit:,} more characters)"


def shown(v: Any, limit: int = ECHO_CHARS) -> str:
    """An untrusted value as an error message echoes it: repr (so a string is
    quoted), controls escaped, at most `limit` characters."""
    try:
        r = repr(v)
    except (RecursionError, ValueError):  # a deeply nested list; a huge int
        r = f"<{type(v).__name__}>"
    return cap(escape_controls(r), limit)
