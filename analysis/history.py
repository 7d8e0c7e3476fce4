"""Per-page reference histories: `df_history` (a DataFrame) and `plot_history`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pageref.analysis import model as model_mod
from pageref.analysis import segments as seg
from pageref.analysis.anomalies import DEFAULT_THRESHOLD_NS, TraceLike, columns_of
from pageref.analysis.columns import PGMAP, K
from pageref.errors import PagerefError
from pageref.trace.io import Trace, iter_batches, read_header
from pageref.trace.schema import KINDS

HISTORY_COLUMNS = (
    "row", "ts_ns", "kind", "pfn", "page", "refs", "w", "idle", "refcount_before",
    "refcount_observed", "refcount_after", "pins", "gets", "pin_put", "gap", "lost",
    "unexplained", "pid", "tid", "comm", "probe", "stack",
)
_PGMAP_NAMES = {v: k for k, v in PGMAP.items()}


def df_history(trace: TraceLike, pfn: int | None = None) -> pd.DataFrame:
    """The reference history of one page (`pfn`) or of every page, in (pfn, time)
    order (stable: events with equal ts_ns keep file order).

    Columns:
      row               position of the event in trace.events (file order)
      ts_ns             event time (CLOCK_MONOTONIC ns)
      kind              get, pin, put, unpin, free, busy, grab_failed, ref (one
                        change the kernel's page_ref tracepoint reported: the record
                        of a reference another row may name, never counted as one)
      pfn               page frame number the event names
      page              the page the analysis counts it on: pfn, or for a large
                        folio (order > 0) its head pfn (pfn rounded down to 2^order)
      refs              references taken or dropped (null in the file -> 1); on a
                        ref row the signed change (0: a page_ref_set, no change known)
      w                 pin weight: the header's pin bias for a small page, 1 for
                        a large folio (order > 0)
      idle              idle refcount of the page's pgmap type (header; 0 unknown)
      refcount_before   refcount just before the event: observed where the event
                        recorded it; else, on a page with ref rows, the count the
                        page's latest ref row left (exact: the kernel reports every
                        change); else inferred from the last observation plus the
                        events' effects since (<NA> where neither is possible, e.g.
                        after lost events)
      refcount_observed True where refcount_before is exact (recorded or from a
                        ref row), False where inferred
      refcount_after    refcount_before + the event's effect (get +refs,
                        pin +refs*w, put -refs, unpin -refs*w, others 0); on a ref
                        row the kernel's refcount_after
      pins, gets        pins and gets outstanding after the event, counted from the
                        trace (never below 0; reset to 0 by a free)
      pin_put           True for a put counted as a pin's release (pin_put_mismatch)
      gap               True when `lost` rows fall between the page's previous
                        event and this one: the history has a hole here
      unexplained       True where the refcount changed with no traced operation
                        to explain it (analysis/completeness.py): the later row of
                        an unexplained transition, or an unattributed ref row
      lost              events those `lost` rows say were lost (0 if unknown)
      pid, tid, comm    who (nullable)
      probe, stack      kernel symbol (str) and stack (array of str, innermost
                        first), where recorded; None otherwise
    """
    cols = columns_of(trace)
    m = model_mod.build(cols, DEFAULT_THRESHOLD_NS)
    lo, hi = m.page_range(pfn) if pfn is not None else (0, len(m.kind))
    gap, lost = _page_losses(m)
    # The history lists references; a page's own `lost` row shows as a gap on
    # its next event.
    sl = lo + np.flatnonzero(m.kind[lo:hi] != K["lost"])
    pos = m.idx[sl]
    kinds = pd.Categorical.from_codes(m.kind[sl].astype(np.int64), categories=list(KINDS))
    before, exact = m.exact
    is_ref = m.kind[sl] == K["ref"]
    known = (m.known | exact)[sl]
    before = before[sl]
    after = np.where(is_ref, cols.refcount_after[pos], before + m.delta[sl])
    after_known = np.where(is_ref, cols.has_refcount_after[pos], known)
    comm_codes = cols.comm[pos].astype(np.int64)
    pid = cols.pid[pos]
    tid = cols.tid[pos]
    df = pd.DataFrame({
        "row": cols.rows()[pos],
        "ts_ns": m.ts[sl],
        "kind": kinds,
        "pfn": cols.pfn[pos],
        "page": m.pfn[sl],
        "refs": m.refs[sl],
        "w": m.w[sl],
        "idle": m.idle[sl],
        "refcount_before": pd.array(np.where(known, before, 0), dtype="Int64"),
        "refcount_observed": exact[sl],
        "refcount_after": pd.array(np.where(after_known, after, 0), dtype="Int64"),
        "pins": m.pins_after[sl],
        "gets": m.gets_after[sl],
        "pin_put": m.mismatch[sl],
        "gap": gap[sl],
        "lost": lost[sl],
        "unexplained": np.isin(cols.rows()[pos], _unexplained_rows(cols)),
        "pid": pd.array(pid, dtype="Int64"),
        "tid": pd.array(tid, dtype="Int64"),
        "comm": pd.Categorical.from_codes(comm_codes, categories=cols.comm_names)
        if cols.comm_names else pd.Categorical([None] * len(pos)),
    })
    df.loc[~known, "refcount_before"] = pd.NA
    df.loc[~after_known, "refcount_after"] = pd.NA
    df.loc[pid < 0, "pid"] = pd.NA
    df.loc[tid < 0, "tid"] = pd.NA
    probe, stack = _details(trace, df["row"].to_numpy())
    df["probe"] = pd.Series(probe, index=df.index, dtype=object)
    df["stack"] = stack
    return df.reset_index(drop=True)


def _unexplained_rows(cols) -> np.ndarray:
    """Rows of the trace's unexplained steps (analysis/completeness.py)."""
    from pageref.analysis.completeness import Tally

    t = Tally(cols.header)
    t.add(cols)
    t.settle(None)
    return np.array([r[0] for r in t.unexplained_rows()], dtype=np.int64)


def _page_losses(m: model_mod.PageModel) -> tuple[np.ndarray, np.ndarray]:
    """gap and lost per per-page row, a page's own `lost` rows moved onto the
    page's next event (what the history shows)."""
    own = np.flatnonzero(m.kind == K["lost"])
    page_gap = m.gap if m.gap_any is None else m.gap_any   # ref rows show their own
    if not len(own):
        return page_gap, m.lost_between
    gap = page_gap.copy()
    lost = np.array(m.lost_between, dtype=np.int64)
    nxt = seg.next_true_index(m.kind != K["lost"], m.page_starts, at=own)
    ok = nxt >= 0
    gap[nxt[ok]] = True
    np.add.at(lost, nxt[ok], np.asarray(m.refs)[own[ok]])
    return gap, lost


def _details(trace: TraceLike, rows: np.ndarray):
    """probe and stack of the given rows (only an in-memory Trace has them):
    probe as strings (None where not recorded), stack as arrays of symbols."""
    none = np.full(len(rows), None, dtype=object)
    if isinstance(trace, Trace) and len(rows):
        ev = trace.events
        sub = ev.loc[rows] if not isinstance(ev.index, pd.RangeIndex) else ev.iloc[rows]
        probe = sub["probe"].astype(object).to_numpy().copy()
        probe[pd.isna(probe)] = None
        stack = sub["stack"].to_numpy(dtype=object).copy()
        stack[pd.isna(stack)] = None
        return probe, stack
    return none, none.copy()


def read_page_trace(path: Path, pfn: int, progress=None) -> Trace:
    """A Trace holding only `pfn`'s events and the `lost` rows (for gaps), indexed
    by their row positions in the full trace. Streams: memory stays small."""
    header = read_header(path)
    keep = []
    base = 0
    end = None
    for df in iter_batches(Path(path)):
        pf = df["pfn"].fillna(-1).to_numpy(dtype=np.int64)
        order = np.clip(df["order"].fillna(0).to_numpy(dtype=np.int64), 0, 62)
        kind = df["kind"].astype(str).to_numpy()
        # The page's own events, its large folio's (any page of it), the lost
        # rows (gaps) and the busy checks with no page (missed_wakeup).
        mask = (pf == pfn) | ((order > 0) & ((pf >> order) == (pfn >> order))) \
            | (kind == "lost") | ((kind == "busy") & (pf < 0))
        sub = df[mask]
        sub.index = np.flatnonzero(mask) + base
        keep.append(sub)
        base += len(df)
        if len(df):
            t = int(df["ts_ns"].max())
            end = t if end is None else max(end, t)
        if progress:
            progress(base)
    events = pd.concat(keep) if keep else None
    if events is None:
        from pageref.trace.io import read_trace
        return read_trace(path)
    # The page's anomalies are decided against the whole trace's end.
    if end is not None and (header.end_ns is None or header.end_ns < end):
        header.end_ns = end
    return Trace(Path(path), header, events)


def plot_history(history: pd.DataFrame, out: Path | str, title: str | None = None,
                 anomalies: pd.DataFrame | None = None) -> Path:
    """Draw one page's refcount over time (step line), outstanding pins and gets
    below it, the idle level, gaps (lost events) and anomalies; save to `out`
    (.png or .svg, from the suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    if out.suffix.lower() not in (".png", ".svg"):
        raise PagerefError(f"{out}: plot file must end in .png or .svg")
    if history.empty:
        raise PagerefError("nothing to plot: the page has no events in the trace")
    t0 = int(history["ts_ns"].iloc[0])
    t = (history["ts_ns"].to_numpy(dtype=np.int64) - t0) / 1e9
    fig, (ax, ax2) = plt.subplots(2, 1, sharex=True, figsize=(10, 6),
                                  gridspec_kw={"height_ratios": [3, 1]})
    after = history["refcount_after"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    ax.step(t, after, where="post", color="#1f77b4", label="refcount after event")
    idle = int(history["idle"].iloc[0])
    ax.axhline(idle, color="grey", linestyle="--", linewidth=1, label=f"idle ({idle})")
    markers = {"get": ("^", "#2ca02c"), "pin": ("^", "#d62728"), "put": ("v", "#2ca02c"),
               "unpin": ("v", "#d62728"), "free": ("x", "black"), "busy": ("s", "#ff7f0e"),
               "grab_failed": ("o", "#9467bd")}
    kinds = history["kind"].astype(str).to_numpy()
    for k, (mk, color) in markers.items():
        sel = kinds == k
        if sel.any():
            ax.scatter(t[sel], np.nan_to_num(after[sel], nan=idle), marker=mk, color=color,
                       s=24, zorder=3, label=k)
    for x in t[history["gap"].to_numpy(dtype=bool)]:
        ax.axvline(x, color="#ff7f0e", alpha=0.4, linewidth=3)
        ax2.axvline(x, color="#ff7f0e", alpha=0.4, linewidth=3)
    if anomalies is not None and not anomalies.empty:
        for _, a in anomalies.iterrows():
            x = (int(a["ts_ns"]) - t0) / 1e9
            ax.axvline(x, color="red", alpha=0.6, linestyle=":")
            ax.annotate(str(a["kind"]), (x, ax.get_ylim()[1]), rotation=90, va="top",
                        fontsize=7, color="red")
    ax.set_ylabel("_refcount")
    ax.legend(loc="upper left", fontsize=7, ncol=4)
    ax.set_title(title or f"pfn {int(history['page'].iloc[0]):#x}")
    ax2.step(t, history["pins"].to_numpy(), where="post", color="#d62728", label="pins (P)")
    ax2.step(t, history["gets"].to_numpy(), where="post", color="#2ca02c", label="gets (G)")
    ax2.set_ylabel("outstanding")
    ax2.set_xlabel("seconds since the page's first event")
    ax2.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
