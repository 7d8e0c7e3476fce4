"""Words the report uses for anomaly kinds and severities (no detection here:
the detectors live in pageref.analysis.anomalies; the severity vocabulary is
pageref.analysis.severity's)."""

from __future__ import annotations

from typing import Any

from pageref.analysis.severity import Severity, severity_rank

__all__ = ["KIND_TEXT", "kind_text", "severity_class", "severity_rank"]

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

def severity_class(sev: Any) -> str:
    """CSS class for a severity: sev-error, sev-warning, sev-uncertain, or
    sev-unknown for a word the analysis never emits (pageref.analysis.severity)."""
    s = Severity.of(sev)
    return "sev-unknown" if s is None else f"sev-{s.value}"


def kind_text(kind: str) -> str:
    return KIND_TEXT.get(kind, "")
