"""The probe plan as a trace header records it, typed: which kernel functions
were attached, which event kinds each emits, which drop paths that covers and
which targets were left out and why.

The recorder writes `probe_plan` (one object per attached probe, built by
tracer/plan.py `ProbePlan.header_plan()`) and `coverage` (`CoverageRecord`).
Traces written before those existed carry no `kinds` per entry and keep the
coverage under `tracer` in the header's extra keys: `coverage_of` reads both,
deriving missing kinds from `LEGACY_KINDS`, the one table for that here.

Trace files are untrusted: an entry that is not readable is skipped and said
so in `notes`, never guessed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pageref.trace.header import TraceHeader
from pageref.trace.schema import KINDS

_GRAB = ("get", "pin", "grab_failed")

# Event kinds of a probe in a trace written before entries carried `kinds`: by
# symbol where the symbol decides, else by logical probe. Unknown -> ().
# tests/unit/test_trace_plan_record.py checks it against tracer/plan.py TARGETS.
LEGACY_KINDS: dict[str, tuple[str, ...]] = {
    "grab": _GRAB,
    "put": ("put",),
    "free": ("free",),
    "busy": ("busy",),
}
LEGACY_SYMBOL_KINDS: dict[str, tuple[str, ...]] = {
    "gup_put_folio": ("put", "unpin"),   # its FOLL_PIN flag says which
    "unpin_user_page": ("unpin",),
    "unpin_user_pages": ("unpin",),
    "unpin_user_folio": ("unpin",),
    "unpin_folio": ("unpin",),
    "unpin_user_pages_dirty_lock": ("unpin",),
    "unpin_user_page_range_dirty_lock": ("unpin",),
    # mapping references: a refcount rise, never a pin, never a refused grab
    "vmf_insert_page_mkwrite": ("get",),
    "vmf_insert_folio_pmd": ("get",),
    "vmf_insert_folio_pud": ("get",),
}


@dataclasses.dataclass(frozen=True)
class PlanEntry:
    """One attached probe, as the trace header records it."""

    probe: str              # logical probe: grab | put | free | busy
    symbol: str
    method: str             # tracer/plan.py AttachMethod value, e.g. "kprobe"
    kinds: tuple[str, ...]  # event kinds it emits (trace/schema.py KINDS)
    signature: str | None = None
    returns: str | None = None


@dataclasses.dataclass(frozen=True)
class LeftOut:
    """A target the plan's resolution did not attach, and why."""

    probe: str
    symbol: str
    why: str


@dataclasses.dataclass(frozen=True)
class Coverage:
    entries: tuple[PlanEntry, ...]
    covered: tuple[str, ...]      # drop paths covered (as `pageref probes` prints them)
    uncovered: tuple[str, ...]    # drop paths not covered
    left_out: tuple[LeftOut, ...]
    notes: tuple[str, ...]

    def kinds(self) -> frozenset[str]:
        """Every event kind some attached probe emits."""
        return frozenset(k for e in self.entries for k in e.kinds)


def legacy_kinds(probe: str, symbol: str) -> tuple[str, ...]:
    """Kinds of an entry written without them (older traces)."""
    if symbol in LEGACY_SYMBOL_KINDS:
        return LEGACY_SYMBOL_KINDS[symbol]
    return LEGACY_KINDS.get(probe, ())


def coverage_of(header: TraceHeader) -> Coverage:
    """The typed probe plan and coverage of a trace, old or new."""
    notes: list[str] = []
    entries: list[PlanEntry] = []
    for i, raw in enumerate(header.probe_plan):
        entry = _entry(raw, notes, i)
        if entry is not None:
            entries.append(entry)
    if header.coverage is not None:      # validated by TraceHeader on read
        c = header.coverage
        covered, uncovered = tuple(c["covered"]), tuple(c["uncovered"])
        left = tuple(LeftOut(m["probe"], m["symbol"], m["why"]) for m in c["left_out"])
        notes = list(c["notes"]) + notes
    else:
        t = header.extra.get("tracer")
        t = t if isinstance(t, dict) else {}
        covered = _strings(t.get("drop_paths_covered"), "drop_paths_covered", notes)
        uncovered = _strings(t.get("drop_paths_uncovered"), "drop_paths_uncovered", notes)
        left = _left_out(t.get("probes_missing"), notes)
        notes = list(_strings(t.get("notes"), "notes", notes)) + notes
    return Coverage(entries=tuple(entries), covered=covered, uncovered=uncovered,
                    left_out=left, notes=tuple(notes))


def _entry(raw: dict[str, Any], notes: list[str], i: int) -> PlanEntry | None:
    probe, symbol, method = raw.get("probe"), raw.get("symbol"), raw.get("method")
    if not (isinstance(probe, str) and isinstance(symbol, str) and isinstance(method, str)):
        notes.append(f"probe plan entry {i} has no probe/symbol/method strings: skipped")
        return None
    kinds_raw = raw.get("kinds")
    if kinds_raw is None:
        kinds = legacy_kinds(probe, symbol)
    elif isinstance(kinds_raw, list) and all(isinstance(k, str) for k in kinds_raw):
        kinds = tuple(k for k in kinds_raw if k in KINDS)
        if len(kinds) != len(kinds_raw):
            notes.append(f"probe plan entry {symbol}: unknown event kinds "
                         f"{sorted(set(kinds_raw) - set(KINDS))} ignored")
    else:
        notes.append(f"probe plan entry {symbol}: 'kinds' is not a list of names: ignored")
        kinds = ()
    sig, ret = raw.get("signature"), raw.get("returns")
    return PlanEntry(probe=probe, symbol=symbol, method=method, kinds=kinds,
                     signature=sig if isinstance(sig, str) else None,
                     returns=ret if isinstance(ret, str) else None)


def _strings(v: Any, what: str, notes: list[str]) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list):
        notes.append(f"header tracer.{what} is not a list: ignored")
        return ()
    out = tuple(x for x in v if isinstance(x, str))
    if len(out) != len(v):
        notes.append(f"header tracer.{what}: {len(v) - len(out)} item(s) not text, ignored")
    return out


def _left_out(v: Any, notes: list[str]) -> tuple[LeftOut, ...]:
    if v is None:
        return ()
    if not isinstance(v, list):
        notes.append("header tracer.probes_missing is not a list: ignored")
        return ()
    out = []
    for m in v:
        if isinstance(m, dict) and all(isinstance(m.get(k), str)
                                       for k in ("probe", "symbol", "why")):
            out.append(LeftOut(m["probe"], m["symbol"], m["why"]))
        else:
            notes.append("header tracer.probes_missing: an item without probe/symbol/why "
                         "strings, ignored")
    return tuple(out)
