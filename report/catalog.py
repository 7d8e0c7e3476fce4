"""Words the report uses for anomaly kinds and severities (no detection here:
the detectors live in pageref.analysis.anomalies)."""

from __future__ import annotations

from typing import Any

# One-line explanations shown above each kind's table.
KIND_TEXT: dict[str, str] = {
    "refcount_underflow": "A put or unpin took the page's observed refcount below its idle value.",
    "grab_on_free_page": "A get or pin on a page whose refcount was 0: GUP on a freed page "
                         "(a 0-refcount page still mapped).",
    "pin_put_mismatch": "A pin released through put_page instead of unpin: the refcount "
                        "dropped below what the outstanding pins require.",
    "pin_leak": "A pin still outstanding at the end of the trace.",
    "free_while_referenced": "The page was freed back to its owner while a pin the trace saw "
                             "taken had not been released.",
    "double_free": "A page freed twice with no get or pin in between.",
    "busy_page_stall": "A page reported busy (truncate / hole punch waiting) stayed referenced "
                       "for at least the threshold.",
    "missed_wakeup": "A busy page went idle but the waiting task never re-checked: a lost "
                     "wake-up, the task may sleep in truncate for ever.",
    "longterm_pin_fsdax": "A FOLL_LONGTERM pin on an fsdax page.",
    "grab_refused_on_free_page": "The kernel refused a grab on a page at refcount 0 although "
                                 "its type idles above 0: a freed page is still mapped.",
    "busy_check_missed_reference": "A truncate or hole punch's busy check found nothing busy "
                                   "while pages of its mapping still held references: the "
                                   "blocks went back to the file system referenced.",
}

# Severity words the analysis may use, ranked; numbers are taken as they are.
_SEVERITY_RANK = {
    "critical": 4, "high": 3, "error": 3, "bug": 3,
    "medium": 2, "warning": 2, "warn": 2,
    "low": 1, "info": 0, "note": 0,
}


def severity_rank(sev: Any) -> float:
    """Sort key for a severity (bigger is worse); unknown words rank as 'medium'."""
    if sev is None:
        return 0.0
    try:
        if isinstance(sev, (int, float)) and not isinstance(sev, bool):
            return float(sev)
    except (TypeError, ValueError):
        pass
    if sev != sev:  # NaN
        return 0.0
    return float(_SEVERITY_RANK.get(str(sev).strip().lower(), 2))


def severity_class(sev: Any) -> str:
    """CSS class for a severity: sev-high, sev-medium or sev-low."""
    r = severity_rank(sev)
    if r >= 3:
        return "sev-high"
    if r >= 2:
        return "sev-medium"
    return "sev-low"


def kind_text(kind: str) -> str:
    return KIND_TEXT.get(kind, "")
