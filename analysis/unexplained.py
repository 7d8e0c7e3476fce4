"""The unexplained steps of a trace's refcount history, row by row
(`df_unexplained`), and the kernel code behind the unattributed changes
(`by_frame`): what the completeness figure (analysis/completeness.py) counts
as unexplained, with the probes and stacks the analysis columns leave out.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pageref.analysis.completeness import Tally, tally
from pageref.trace import io as trace_io
from pageref.trace.io import Trace
from pageref.trace.schema import KINDS

UNEXPLAINED_COLUMNS = ("row", "ts_ns", "page", "kind", "probe", "pid", "tid", "comm",
                       "refcount_before", "refcount_after", "delta", "stack")

# Frames of the refcount helpers themselves (and of the tracing machinery):
# the code that changed the count is the first frame past them.
_HELPERS = ("page_ref_", "__page_ref_", "folio_ref_", "__folio_ref_", "set_page_count",
            "init_page_count", "set_page_refcounted", "folio_put", "__folio_put",
            "folio_put_refs", "put_page", "folio_get", "get_page", "try_get_page",
            "folio_try_get", "page_ref", "trace_", "__traceiter_", "__SCT__", "perf_trace_",
            "bpf_", "__bpf_", "trace_event_raw_event_",
            "ftrace_trampoline")  # an fentry trampoline on the stack, not a caller


def df_unexplained(trace: Any, t: Tally | None = None) -> pd.DataFrame:
    """The unexplained steps of `trace` (a Trace, Columns or a path), by row.

    Columns:
      row               the row where it shows (trace position): the later row of
                        an unexplained transition, or the unattributed ref row
      ts_ns             its time
      page              the page (a large folio's head pfn)
      kind              that row's kind (ref for a page_ref change)
      probe             its probe: the tracepoint of a ref row (None unrecorded)
      pid, tid, comm    who (nullable)
      refcount_before   a transition: the refcount the page's previous row left
                        as the model counts it; a ref row: its refcount before
      refcount_after    a transition: the refcount the row recorded; a ref row:
                        its refcount after
      delta             refcount_after - refcount_before: the change nothing
                        traced explains
      stack             the row's kernel stack (list of str, innermost first) or None
    The first completeness.MAX_DETAIL steps are listed (the figure counts all).
    `t`: a tally already made of the same trace.
    """
    t = t if t is not None else tally(trace)
    recs = t.unexplained_rows()
    if not recs:
        return pd.DataFrame({c: [] for c in UNEXPLAINED_COLUMNS})
    a = np.array([r[:6] + r[7:] for r in recs], dtype=np.int64)
    rows = a[:, 0]
    probe, stack = details(trace, rows)
    df = pd.DataFrame({
        "row": rows, "ts_ns": a[:, 1], "page": a[:, 2],
        "kind": pd.Categorical.from_codes(a[:, 3], categories=list(KINDS)),
        "probe": pd.Series(probe, dtype=object),
        "pid": pd.array(np.where(a[:, 5] >= 0, a[:, 5], 0), dtype="Int64"),
        "tid": pd.array(np.where(a[:, 4] >= 0, a[:, 4], 0), dtype="Int64"),
        "comm": pd.Series([t.comm_name(r[6]) for r in recs], dtype=object),
        "refcount_before": a[:, 6], "refcount_after": a[:, 7], "delta": a[:, 8],
        "stack": pd.Series(stack, dtype=object),
    })
    df.loc[a[:, 5] < 0, "pid"] = pd.NA
    df.loc[a[:, 4] < 0, "tid"] = pd.NA
    return df


def details(trace: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """probe and stack of the given trace rows (sorted global row numbers), from
    an in-memory Trace or read from the file (only those two columns)."""
    probe = np.full(len(rows), None, dtype=object)
    stack = np.full(len(rows), None, dtype=object)
    if not len(rows):
        return probe, stack
    if isinstance(trace, Trace):
        ev = trace.events
        sub = ev.loc[rows] if not isinstance(ev.index, pd.RangeIndex) else ev.iloc[rows]
        for name, out in (("probe", probe), ("stack", stack)):
            if name in sub.columns:
                v = sub[name].astype(object).to_numpy()
                for i, x in enumerate(v):
                    out[i] = _plain(x)
        return probe, stack
    if not isinstance(trace, (str, Path)):
        return probe, stack
    for batch in trace_io.iter_tables(Path(trace), ("probe", "stack")):
        lo, n = batch.first_row, batch.table.num_rows
        a, b = np.searchsorted(rows, lo), np.searchsorted(rows, lo + n)
        if a == b:
            continue
        take = (rows[a:b] - lo).tolist()
        probe[a:b] = batch.table.column("probe").take(take).to_pylist()
        stack[a:b] = [None if s is None else list(s)
                      for s in batch.table.column("stack").take(take).to_pylist()]
    return probe, stack


def _plain(x: Any) -> Any:
    if x is None or (isinstance(x, float) and x != x) or x is pd.NA:
        return None
    if isinstance(x, np.ndarray):
        return [str(s) for s in x]
    return list(x) if isinstance(x, (list, tuple)) else x


def first_frame(stack: Any) -> str:
    """The first frame of a stack past the refcount helpers (offsets dropped);
    "(no stack)" when none was recorded."""
    if stack is None or not len(stack):
        return "(no stack)"
    for frame in stack:
        name = str(frame).split("+", 1)[0].strip()
        if not name.startswith(_HELPERS):
            return name
    return str(stack[-1]).split("+", 1)[0].strip()


def by_frame(stacks: Any) -> list[dict[str, Any]]:
    """[{"frame": first frame past the helpers, "count": n}], most first (then
    by name): where the unattributed changes come from."""
    c = Counter(first_frame(s) for s in stacks)
    return [{"frame": f, "count": n} for f, n in sorted(c.items(), key=lambda x: (-x[1], x[0]))]
