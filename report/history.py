"""The per-page and per-task numbers the report's plots draw.

Per-page refcount histories come from pageref.analysis.history.df_history (the
analysis owns the rules: carried-forward refcounts, gaps where events were
lost). The overview numbers (pins held, references per task) are
simple vectorised sums over the events.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pageref.analysis.history import df_history
from pageref.analysis.model import PageModel
from pageref.trace.io import Trace

_NONE: Any = None   # the null fill, typed so numpy's stubs accept it


def values(s: pd.Series) -> np.ndarray:
    """A string column as a numpy object array (None for null), fast for the
    categorical columns of a trace (converting 10M categoricals with astype(str)
    takes seconds; indexing the categories by code does not)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = np.asarray(s.cat.categories.astype(object), dtype=object)
        cats = np.append(cats, _NONE)  # code -1 (null) picks the last entry
        return np.asarray(cats[s.cat.codes.to_numpy()])
    a = s.astype(object).to_numpy()
    return np.asarray(np.where(pd.isna(a), _NONE, a))


def codes(s: pd.Series) -> tuple[np.ndarray, list]:
    """(int64 codes, -1 for null; the names they index) of a string column: the
    categorical's own codes (free), else pandas.factorize."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s.cat.codes.to_numpy().astype(np.int64), list(s.cat.categories)
    c, names = pd.factorize(s.to_numpy(dtype=object), use_na_sentinel=True)
    return c.astype(np.int64), list(names)


def counts_by(s: pd.Series, mask: np.ndarray | None = None) -> pd.Series:
    """Occurrences of each non-null value (most first), as a Series by name."""
    c, names = codes(s)
    if mask is not None:
        c = c[mask]
    n = np.bincount(c[c >= 0], minlength=len(names)) if len(names) else np.zeros(0, int)
    out = pd.Series(n, index=[str(x) for x in names], dtype=np.int64)
    return out[out > 0].sort_values(ascending=False, kind="stable")


def kind_counts(ev: pd.DataFrame) -> pd.Series:
    """Events per kind (most first), kinds as plain strings."""
    if not len(ev):
        return pd.Series(dtype=np.int64)
    return counts_by(ev["kind"])


def kind_is(ev: pd.DataFrame, *names: str) -> np.ndarray:
    """Boolean mask of events whose kind is one of `names` (compares codes)."""
    c, cats = codes(ev["kind"])
    wanted = [i for i, k in enumerate(cats) if k in names]
    return np.isin(c, wanted) if wanted else np.zeros(len(ev), dtype=bool)


def _kind(ev: pd.DataFrame) -> np.ndarray:
    return values(ev["kind"])


def _num(ev: pd.DataFrame, name: str, fill: float) -> np.ndarray:
    if name not in ev.columns:
        return np.full(len(ev), fill, dtype=np.float64)
    return pd.to_numeric(ev[name], errors="coerce").astype("Float64").fillna(fill) \
        .to_numpy(dtype=np.float64)


def device_mask(ev: pd.DataFrame) -> np.ndarray:
    """Events on ZONE_DEVICE pages (zone_device true, or a pgmap type recorded)."""
    if not len(ev):
        return np.zeros(0, dtype=bool)
    m = np.zeros(len(ev), dtype=bool)
    if "zone_device" in ev.columns:
        m |= ev["zone_device"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    if "pgmap_type" in ev.columns:
        m |= ev["pgmap_type"].notna().to_numpy(dtype=bool)
    return m


def refcount_delta(ev: pd.DataFrame, pin_bias: int) -> np.ndarray:
    """Each event's own change to the page's refcount."""
    refs = _num(ev, "refs", 1)
    order = _num(ev, "order", 0)
    w = np.where(order > 0, 1, pin_bias)
    return (np.where(kind_is(ev, "get"), refs, 0) + np.where(kind_is(ev, "pin"), refs * w, 0)
            - np.where(kind_is(ev, "put"), refs, 0)
            - np.where(kind_is(ev, "unpin"), refs * w, 0))


def page_trace(trace: Trace, pfn: int) -> Trace:
    """A Trace of `pfn`'s events and the `lost` rows (the history's gaps), indexed by
    their positions in the full trace (so `row` and evidence positions agree)."""
    ev = trace.events
    mask = (ev["pfn"] == pfn).fillna(False).to_numpy(dtype=bool) | \
        (_kind(ev) == "lost")
    sub = ev[mask].copy()
    sub.index = np.flatnonzero(mask)
    return Trace(trace.path, trace.header, sub)


def _analysis_history(trace: Trace, pfn: int) -> pd.DataFrame:
    """df_history of one page, with the columns page_history needs."""
    # df_history(trace, pfn) models the whole trace; the page's own events (plus
    # lost rows) give the same history at a fraction of the cost.
    h = df_history(page_trace(trace, pfn), pfn=pfn)
    h = h.rename(columns={"row": "pos"})
    ev = trace.events
    pos = h["pos"].to_numpy(dtype=np.int64)
    for name, fill in (("order", 0.0), ("pincount", np.nan)):
        h[name] = _num(ev.iloc[pos], name, fill) if len(pos) else np.zeros(0)
    h["refs"] = pd.to_numeric(h["refs"], errors="coerce").fillna(1)
    if "gap" not in h.columns:
        h["gap"] = False
    return h


def page_history(trace: Trace, pfn: int) -> pd.DataFrame:
    """One page's events in order: pos, ts_ns, kind, refcount_after, pins_decoded, gap.

    pins_decoded is what the refcount says about pins: refcount // pin_bias for a
    small page, the folio's pincount (after the event) for a large folio."""
    h = _analysis_history(trace, pfn)
    h = h.sort_values("ts_ns", kind="stable").reset_index(drop=True)
    rc = pd.to_numeric(h["refcount_after"], errors="coerce").astype("Float64") \
        .to_numpy(dtype=np.float64, na_value=np.nan)
    order = pd.to_numeric(h["order"], errors="coerce").fillna(0).to_numpy(dtype=np.float64)
    kind = h["kind"].astype(str).to_numpy()
    refs = pd.to_numeric(h["refs"], errors="coerce").fillna(1).to_numpy(dtype=np.float64)
    pc = pd.to_numeric(h["pincount"], errors="coerce").astype("Float64") \
        .to_numpy(dtype=np.float64, na_value=np.nan)
    pc_after = pc + np.where(kind == "pin", refs, 0) - np.where(kind == "unpin", refs, 0)
    small = np.floor(np.maximum(rc, 0) / trace.header.pin_bias)
    h["refcount_after"] = rc
    h["pins_decoded"] = np.where(order > 0, pc_after, small)
    h["pos"] = pd.to_numeric(h["pos"], errors="coerce").fillna(-1).astype(np.int64)
    h["gap"] = h["gap"].astype("boolean").fillna(False).astype(bool)
    return h[["pos", "ts_ns", "kind", "refcount_after", "pins_decoded", "gap"]]


def last_refcount_per_page(trace: Trace, device_only: bool = True) -> pd.Series:
    """Refcount after each page's last event with an observed refcount, by pfn."""
    ev = trace.events
    if not len(ev):
        return pd.Series(dtype=np.int64)
    m = ev["pfn"].notna().to_numpy(dtype=bool) & ~np.isnan(_num(ev, "refcount", np.nan))
    if device_only:
        m &= device_mask(ev)
    sub = ev[m]
    if not len(sub):
        return pd.Series(dtype=np.int64)
    after = _num(sub, "refcount", 0) + refcount_delta(sub, trace.header.pin_bias)
    # a ref row (the kernel's record of one change) carries the count after it
    after = np.where(kind_is(sub, "ref") & ~np.isnan(_num(sub, "refcount_after", np.nan)),
                     _num(sub, "refcount_after", 0), after)
    pfn = sub["pfn"].to_numpy(dtype=np.int64)
    order = np.lexsort((sub["ts_ns"].to_numpy(dtype=np.int64), pfn))  # by pfn, then time
    pfn, after = pfn[order], after[order]
    last = np.ones(len(pfn), dtype=bool)
    last[:-1] = pfn[1:] != pfn[:-1]
    return pd.Series(after[last].astype(np.int64), index=pfn[last])


def pins_over_time_from_model(model: PageModel) -> tuple[np.ndarray, np.ndarray] | None:
    """(ts_ns, pins outstanding on all pages) from the analysis's page model: the
    analysis's own counts (a pin released through put_page, pin_put_mismatch,
    is released; a free ends the page's life)."""
    pins = np.asarray(model.pins_after, dtype=np.int64)
    starts = np.asarray(model.page_starts, dtype=bool)
    ts = np.asarray(model.ts, dtype=np.int64)
    if not len(pins):
        return None
    prev = np.empty_like(pins)
    prev[0] = 0
    prev[1:] = pins[:-1]
    prev[starts] = 0
    d = pins - prev
    nz = np.flatnonzero(d)
    if not len(nz):
        return None
    order = nz[np.argsort(ts[nz], kind="stable")]
    return ts[order], np.cumsum(d[order])


def references_by_task(trace: Trace) -> pd.DataFrame:
    """Per task: references taken (gets and pins) and still held at the end.

    Held = taken minus dropped by the same task on the same page (a reference
    dropped by another task is not attributed), never below zero per page.
    Columns: comm, pid, taken, held_gets, held_pins; most held first."""
    ev = trace.events
    cols = ["comm", "pid", "taken", "held_gets", "held_pins"]
    if not len(ev) or "pid" not in ev.columns:
        return pd.DataFrame(columns=cols)
    m = kind_is(ev, "get", "pin", "put", "unpin") & ev["pfn"].notna().to_numpy(dtype=bool)
    sub = ev[m]
    if not len(sub):
        return pd.DataFrame(columns=cols)
    refs = _num(sub, "refs", 1)
    if "comm" in sub.columns:
        comm, comm_names = codes(sub["comm"])
    else:
        comm, comm_names = np.full(len(sub), -1, dtype=np.int64), []
    # integer keys throughout: grouping 10M strings costs seconds
    df = pd.DataFrame({
        "comm": comm,
        "pid": pd.to_numeric(sub["pid"], errors="coerce").fillna(-1).to_numpy(dtype=np.int64),
        "pfn": sub["pfn"].to_numpy(dtype=np.int64),
        "gets": np.where(kind_is(sub, "get"), refs, 0),
        "puts": np.where(kind_is(sub, "put"), refs, 0),
        "pins": np.where(kind_is(sub, "pin"), refs, 0),
        "unpins": np.where(kind_is(sub, "unpin"), refs, 0),
    })
    per_page = df.groupby(["comm", "pid", "pfn"], sort=False)[
        ["gets", "puts", "pins", "unpins"]].sum()
    per_page["held_gets"] = (per_page["gets"] - per_page["puts"]).clip(lower=0)
    per_page["held_pins"] = (per_page["pins"] - per_page["unpins"]).clip(lower=0)
    per_page["taken"] = per_page["gets"] + per_page["pins"]
    t = per_page.groupby(level=["comm", "pid"])[["taken", "held_gets", "held_pins"]].sum()
    t = t[t["taken"] > 0].reset_index()
    names = np.array([str(c) for c in comm_names] + ["?"], dtype=object)
    t["comm"] = names[t["comm"].to_numpy()]  # code -1 -> "?"
    t["_held"] = t["held_gets"] + t["held_pins"]
    t = t.sort_values(["_held", "taken", "comm", "pid"], ascending=[False, False, True, True])
    for c in ("taken", "held_gets", "held_pins"):
        t[c] = t[c].astype(np.int64)
    return t[cols].reset_index(drop=True)
