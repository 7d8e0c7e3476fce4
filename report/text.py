"""Untrusted text and small values made readable for the page (generic: no
domain logic). HTML escaping is the template's job (Jinja2 autoescaping); this
only keeps the page readable: control characters (and bidirectional overrides)
escaped by pageref.trace.text, length capped."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pageref.analysis.fmt import fmt_pfn as _fmt_pfn
from pageref.trace.text import escape_controls


def _missing(v: Any) -> bool:
    """None, NaN or pd.NA (a scalar); a list or array is never 'missing'."""
    if v is None:
        return True
    if isinstance(v, (list, tuple, np.ndarray)):
        return False
    return bool(pd.isna(v))


def clean_text(v: Any, limit: int = 200) -> str:
    """Untrusted text for display: str, control characters as \\xNN, length capped."""
    if _missing(v):
        return ""
    s = escape_controls(str(v))
    return s if len(s) <= limit else s[: limit - 1] + "…"


def clean_strings(v: Any, limit: int = 400) -> list[str]:
    """A header value that should be a string or a list of them, cleaned; [] otherwise."""
    if isinstance(v, str):
        return [clean_text(v, limit)]
    if isinstance(v, (list, tuple)):
        return [clean_text(x, limit) for x in v if isinstance(x, (str, int, float))]
    return []


def fmt_pfn(v: Any) -> str:
    """A page frame number in hex; '-' when there is none (None, NaN, NA)."""
    return "-" if _missing(v) else _fmt_pfn(int(v))


def fmt_int(v: Any) -> str:
    return "" if _missing(v) else str(int(v))


def task(comm: Any, pid: Any, limit: int = 200) -> str:
    """'comm[pid]', with '?' for what is unknown."""
    c = clean_text(comm, limit) or "?"
    return f"{c}[{fmt_int(pid) or '?'}]"


def column(df: pd.DataFrame, name: str) -> pd.Series:
    """df[name], or a column of None when a (hand-written) trace has no such column."""
    if name in df.columns:
        return df[name]
    return pd.Series([None] * len(df), index=df.index, dtype=object)
