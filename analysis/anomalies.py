"""find_anomalies: the anomaly catalog (analysis/detectors/) over a trace, through
the engine (analysis/engine.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

from pageref.analysis import columns as cols_mod
from pageref.analysis import model as model_mod
from pageref.analysis.columns import Columns, K
from pageref.analysis.completeness import Completeness
from pageref.analysis.detectors import DETECTORS
from pageref.analysis.detectors.base import Anomaly
from pageref.analysis.engine import DEFAULT_THRESHOLD_NS, REORDER_NS, Engine
from pageref.trace import io as trace_io
from pageref.trace.header import TraceHeader
from pageref.trace.io import Trace

ANOMALY_COLUMNS = ("kind", "pfn", "ts_ns", "pid", "comm", "detail", "severity", "evidence",
                   "count")

TraceLike = Union[Trace, Columns, str, Path]


def columns_of(trace: TraceLike, progress=None) -> Columns:
    """The analysis columns of a Trace, a path (read lazily, only what is needed)
    or already-loaded Columns."""
    if isinstance(trace, Columns):
        return trace
    if isinstance(trace, Trace):
        return cols_mod.from_frame(trace.events, trace.header, trace.path)
    return cols_mod.load_columns(Path(trace), progress=progress)


def anomalies_frame(found: Iterable[Anomaly]) -> pd.DataFrame:
    """The anomalies as find_anomalies' DataFrame, in time order."""
    found = list(found)
    # Column by column: dataclasses.asdict deep-copies every evidence list, which
    # cost seconds on a trace with 100k findings.
    df = pd.DataFrame({c: [list(a.evidence) if c == "evidence" else getattr(a, c)
                           for a in found] for c in ANOMALY_COLUMNS},
                      columns=list(ANOMALY_COLUMNS))
    df = df.astype({"pfn": "Int64", "ts_ns": "int64", "pid": "Int64", "count": "int64"})
    df = df.sort_values(["ts_ns", "kind"], kind="stable").reset_index(drop=True)
    return df


def anomalies_of_model(m: model_mod.PageModel) -> pd.DataFrame:
    """Every detector over one whole-trace model (what the engine's last pass does)."""
    found: list[Anomaly] = []
    for det in DETECTORS:
        found.extend(det.detect(m))
    return anomalies_frame(found)


def find_anomalies(trace: TraceLike, threshold_ns: int = DEFAULT_THRESHOLD_NS) -> pd.DataFrame:
    """Every anomaly of the catalog found in `trace`, in time order, by the
    engine (analysis/engine.py): a path is streamed in batches, memory bounded
    by what is live.

    Columns:
      kind      detector name (docs/anomalies.md)
      pfn       page frame number (Int64)
      ts_ns     when it happened (the trace's clock, CLOCK_MONOTONIC ns)
      pid, comm the task it is attributed to (Int64 / str, may be null)
      detail    one human sentence with the numbers that matter
      severity  "error" (a refcount rule broken), "warning" (suspicious) or
                "uncertain" (the evidence spans lost events; analysis/severity.py)
      evidence  list of row positions in trace.events (file order) proving it
      count     how many times it was seen: repeats of one fact on one page life
                are one anomaly (analysis/detectors/repeats.py)
    """
    if isinstance(trace, (str, Path)):
        return stream(Path(trace), threshold_ns).anomalies
    cols = columns_of(trace)
    return anomalies_frame(Engine(cols.header, threshold_ns).run([cols]))


@dataclasses.dataclass
class Streamed:
    """What one streaming pass over a trace file gives `pageref analyze`."""

    anomalies: pd.DataFrame
    counts: dict[str, int]      # events, pages, lost_events (summary.trace_counts)
    header: TraceHeader
    first_ts: int               # earliest event time (0 for an empty trace)
    rows_held: int              # the most rows the engine held at once
    late: int                   # events more than the reorder window out of time order
    completeness: Completeness  # the history's completeness (analysis/completeness.py)
    by_frame: list[dict[str, Any]]  # unattributed page_ref changes by stack frame


def batches(path: Path, batch_rows: int = 1_000_000) -> Iterator[Columns]:
    """The trace file's analysis columns in batches (about `batch_rows` rows;
    Parquet row groups gathered), rows numbered globally, in file order. Read
    through the one trace reader (pageref.trace.io.iter_tables): the same checks
    and error texts as every other command."""
    header = trace_io.read_header(path)
    for batch in trace_io.iter_tables(path, cols_mod.NEEDED, batch_rows):
        yield cols_mod.from_table(batch.table, header, batch.source, batch.first_row)


def horizons(path: Path, batch_rows: int = 1_000_000) -> np.ndarray:
    """For a Parquet trace, per batch of `batches(path, batch_rows)`: the earliest
    event time in that batch and every later one (empty for JSON Lines, where
    reading ahead costs a second parse). Read ahead from the time column alone
    (about a tenth of the analysis), it lets the engine settle verdicts up to
    the next batches' earliest event instead of a second behind the latest one:
    the rows of that second need not be held."""
    if trace_io.trace_format(path) != "parquet":
        return np.zeros(0, dtype=np.int64)
    mins = [int(b.table.column("ts_ns").to_numpy().min()) if b.table.num_rows else _NO_TS
            for b in trace_io.iter_tables(path, ("ts_ns",), batch_rows)]
    return np.minimum.accumulate(np.array(mins[::-1], dtype=np.int64))[::-1]


_NO_TS = np.iinfo(np.int64).max


def stream(path: Path, threshold_ns: int = DEFAULT_THRESHOLD_NS, progress=None,
           batch_rows: int = 1_000_000, reorder_ns: int = REORDER_NS) -> Streamed:
    """Analyse a trace file batch by batch through the engine."""
    header = trace_io.read_header(path)
    eng = Engine(header, threshold_ns, reorder_ns)
    ahead = horizons(path, batch_rows)
    events = lost_rows = 0
    pages = np.zeros(0, dtype=np.int64)
    first: int | None = None
    held = 0
    for k, b in enumerate(batches(path, batch_rows)):
        events += b.n
        lost = b.kind == K["lost"]
        lost_rows += int(np.maximum(b.count[lost], 1).sum())
        sel = b.has_pfn & ~lost
        sh = np.clip(b.order[sel], 0, 62).astype(np.int64)
        pages = np.union1d(pages, (b.pfn[sel] >> sh) << sh)
        lo = int(b.ts.min()) if b.n else None
        if lo is not None:
            first = lo if first is None else min(first, lo)
        # A part's small remainder (a part a little over batch_rows) is decided
        # with the next batch: each decision passes over every row held.
        small = b.n < batch_rows // 4 and k + 1 < len(ahead)
        eng.feed(b, horizon=int(ahead[k + 1]) if k + 1 < len(ahead) else None,
                 decide=not small)
        held = max(held, eng.held)
        if progress:
            progress(events)
    eng.finish()
    counts = {"events": events, "pages": int(len(pages)),
              "lost_events": max(lost_rows, int(header.lost_total))}
    return Streamed(anomalies_frame(eng.found), counts, header,
                    first if first is not None else 0, held, eng.late,
                    eng.completeness(), unattributed_by_frame(path, eng.tally))


def unattributed_by_frame(trace: Any, tally: Any) -> list[dict[str, Any]]:
    """Where a page_ref trace's unattributed changes come from: their stacks'
    first frames past the refcount helpers (analysis/unexplained.py), read for
    those rows only; [] for a trace without ref rows."""
    from pageref.analysis.unexplained import by_frame, details

    if not tally.saw_ref:
        return []
    rows = np.array([r[0] for r in tally.unexplained_rows()], dtype=np.int64)
    return by_frame(details(trace, rows)[1]) if len(rows) else []
