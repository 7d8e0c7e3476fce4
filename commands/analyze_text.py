"""The human-readable `pageref analyze` summary."""

from __future__ import annotations

import collections
import shlex
from collections.abc import Sequence
from typing import Any

from pageref.analysis.completeness import Completeness, describe
from pageref.analysis.fmt import fmt_ns
from pageref.analysis.severity import Severity
from pageref.trace.pgmap_names import display_name

COMPLETENESS_KEYS = ("source", "counted", "explained", "unexplained", "pages", "share")


def render(doc: dict[str, Any], threshold: int, limit: int, t0: int,
           warnings: Sequence[str] = ()) -> str:
    """The summary; text from the trace is as recorded (the caller escapes it
    for the terminal: pageref.trace.text.for_terminal)."""
    tr = doc["trace"]
    idle = ", ".join(f"{display_name(k)}={v}" for k, v in sorted(tr["idle_refcount"].items())
                     ) or "unknown"
    lines = [
        f"{tr['path']}: {doc['events']:,} events on {doc['pages']:,} "
        f"page{'s' if doc['pages'] != 1 else ''}, "
        f"{doc['lost_events']:,} events lost",
        f"  kernel {tr['kernel'] or 'unknown'}, pin bias {tr['pin_bias']}, idle refcount "
        f"{idle}, threshold {fmt_ns(threshold)}",
    ]
    lines += [f"  warning: {w}" for w in warnings]
    comp = doc.get("completeness")
    if comp is not None:
        lines.append("  " + describe(Completeness(**{k: comp[k] for k in COMPLETENESS_KEYS})))
        frames = comp.get("unattributed_by_stack") or []
        if frames:
            lines.append("    unattributed changes from: " + ", ".join(
                f"{f['frame']} {f['count']:,}" for f in frames[:5])
                + (f", ... ({len(frames)} places)" if len(frames) > 5 else ""))
    an = doc["anomalies"]
    if doc["lost_events"]:
        lines.append("  (events were lost: counts near the gaps are uncertain; "
                     "`pageref history` marks them)")
    if not an:
        lines.append("")
        lines.append("No anomalies found.")
        return "\n".join(lines)
    # Verdicts whose evidence spans lost events are shown apart, after the
    # others, and not counted with the errors (docs/anomalies.md).
    sure = [a for a in an if a["severity"] != Severity.UNCERTAIN.value]
    unsure = [a for a in an if a["severity"] == Severity.UNCERTAIN.value]
    shown: list[dict[str, Any]] = []
    if sure:
        errors = sum(1 for a in sure if a["severity"] == Severity.ERROR.value)
        by_kind = doc["by_kind"] if not unsure else _by_kind(sure)
        lines.append("")
        lines.append(f"{len(sure)} anomal{'y' if len(sure) == 1 else 'ies'} "
                     f"({errors} error{'s' if errors != 1 else ''}, {len(sure) - errors} "
                     f"warning{'s' if len(sure) - errors != 1 else ''}): "
                     + ", ".join(f"{k} {v}" for k, v in by_kind.items()))
        lines.append("")
        shown += _list(lines, sure, limit, t0)
    if unsure:
        lines.append("")
        lines.append(f"{len(unsure)} uncertain (the evidence spans lost events: not "
                     f"counted as errors): "
                     + ", ".join(f"{k} {v}" for k, v in _by_kind(unsure).items()))
        lines.append("")
        shown += _list(lines, unsure, limit, t0)
    first = shown[0]
    lines.append("")
    lines.append("One page's history: pageref history "
                 f"{shlex.quote(str(tr['path']))} --pfn {first['pfn_hex']}")
    return "\n".join(lines)


def _list(lines: list[str], an: list[dict[str, Any]], limit: int, t0: int) -> list[dict]:
    shown = an if not limit else an[:limit]
    for a in shown:
        who = f"{a['comm'] or '?'}[{a['pid'] if a['pid'] is not None else '?'}]"
        seen = a.get("count") or 1
        times = f"  seen {seen} times" if seen > 1 else ""
        lines.append(f"  {a['severity']:<7} {a['kind']:<27} pfn {a['pfn_hex'] or '-':<9} "
                     f"+{fmt_ns(a['ts_ns'] - t0):<10} {who}{times}")
        lines.append(f"          {a['detail']}")
        lines.append(f"          evidence: rows {_rows(a['evidence'])}")
    if len(shown) < len(an):
        lines.append(f"  ... {len(an) - len(shown)} more (--limit 0 shows all, --json for "
                     f"machines)")
    return shown


def _by_kind(an: list[dict[str, Any]]) -> dict[str, int]:
    return dict(collections.Counter(a["kind"] for a in an).most_common())


def _rows(rows: list[int]) -> str:
    if len(rows) > 8:
        return ", ".join(map(str, rows[:8])) + f", ... ({len(rows)} rows)"
    return ", ".join(map(str, rows))
