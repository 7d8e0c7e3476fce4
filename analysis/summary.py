"""summarize: the `pageref analyze --json` document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pageref.analysis.anomalies import TraceLike, columns_of
from pageref.analysis.columns import Columns, K
from pageref.analysis.completeness import Completeness
from pageref.analysis.severity import ORDER
from pageref.trace.header import TraceHeader


def trace_counts(cols: Columns) -> dict[str, int]:
    """events, pages (distinct pfns) and lost_events of a trace.

    lost_events is the larger of what the `lost` rows say (a row without a count
    counts 1) and what the header's per-CPU lost counters say (a recorder writes
    both; other tools one or none).
    """
    if cols.pages is None:
        sel = cols.has_pfn & (cols.kind != K["lost"])
        sh = np.clip(cols.order[sel], 0, 62).astype(np.int64)
        # pages as the model counts them: a large folio once, by its head pfn
        cols.pages = int(len(np.unique((cols.pfn[sel] >> sh) << sh)))
    # A `lost` row without a count still says at least one event was lost.
    from_rows = int(np.maximum(cols.count[cols.kind == K["lost"]], 1).sum())
    return {
        "events": int(cols.n),
        "pages": cols.pages,
        "lost_events": max(from_rows, int(cols.header.lost_total)),
    }


def _plain(v: Any) -> Any:
    if v is None or v is pd.NA:
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    return v


def summarize(trace: TraceLike, anomalies: pd.DataFrame) -> dict[str, Any]:
    """{"anomalies": [{"kind", "pfn", "ts_ns", "pid", "comm", "detail", "severity",
    "evidence", "count", "pfn_hex"}...], "events": N, "pages": N, "lost_events": N,
    "by_kind": {kind: N}, "by_severity": {"error": N, "warning": N, "uncertain": N},
    "completeness": {"source", "counted", "explained", "unexplained", "pages", "share"
    [, "unattributed_by_stack": [{"frame", "count"}...]]},
    "trace": {"path", "kernel", "pin_bias", "idle_refcount"}}."""
    from pageref.analysis.anomalies import unattributed_by_frame
    from pageref.analysis.completeness import tally

    cols = columns_of(trace)
    t = tally(cols)
    return document(cols.header, cols.path, trace_counts(cols), anomalies, t.result(),
                    unattributed_by_frame(trace, t))


def document(h: TraceHeader, path: Path | None, counts: dict[str, int],
             anomalies: pd.DataFrame, completeness: Completeness | None = None,
             by_frame: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The --json document from a trace's header, counts (trace_counts),
    anomalies and completeness figure (with, for a page_ref trace, where its
    unattributed changes come from): what a streaming pass has without
    holding the trace."""
    # Column by column (a trace can have 100k findings): evidence lists of ints
    # pass as they are, anything else through _plain.
    names = list(anomalies.columns)
    values = [[v if type(v) is list and all(type(x) is int for x in v) else _plain(v)
               for v in anomalies[c].tolist()] for c in names]
    rows = []
    for rec in zip(*values):
        d = dict(zip(names, rec))
        d["pfn_hex"] = f"{d['pfn']:#x}" if d.get("pfn") is not None else None
        rows.append(d)
    out: dict[str, Any] = {"anomalies": rows}
    out.update(counts)
    out["by_kind"] = {str(k): int(v) for k, v in anomalies["kind"].value_counts().items()} \
        if len(anomalies) else {}
    # Verdicts across a loss are counted apart from the errors and warnings.
    sev = anomalies["severity"].value_counts() if len(anomalies) else {}
    out["by_severity"] = {s.value: int(sev.get(s.value, 0)) for s in ORDER}
    if completeness is not None:
        out["completeness"] = completeness.as_dict()
        if completeness.source == "page_ref":
            out["completeness"]["unattributed_by_stack"] = list(by_frame or [])
    out["trace"] = {"path": str(path) if path is not None else None,
                    "kernel": h.kernel, "pin_bias": h.pin_bias,
                    "idle_refcount": dict(h.idle_refcount)}
    return out
