"""find_anomalies: run the anomaly catalog (analysis/detectors/) over a trace."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Union

import pandas as pd

from pageref.analysis import columns as cols_mod
from pageref.analysis import model as model_mod
from pageref.analysis.columns import Columns
from pageref.analysis.detectors import DETECTORS
from pageref.trace.io import Trace

ANOMALY_COLUMNS = ("kind", "pfn", "ts_ns", "pid", "comm", "detail", "severity", "evidence")
DEFAULT_THRESHOLD_NS = 1_000_000_000

TraceLike = Union[Trace, Columns, str, Path]


def columns_of(trace: TraceLike, progress=None) -> Columns:
    """The analysis columns of a Trace, a path (read lazily, only what is needed)
    or already-loaded Columns."""
    if isinstance(trace, Columns):
        return trace
    if isinstance(trace, Trace):
        return cols_mod.from_frame(trace.events, trace.header, trace.path)
    return cols_mod.load_columns(Path(trace), progress=progress)


def anomalies_of_model(m: model_mod.PageModel) -> pd.DataFrame:
    found = []
    for det in DETECTORS:
        found.extend(det.detect(m))
    df = pd.DataFrame([dataclasses.asdict(a) for a in found], columns=list(ANOMALY_COLUMNS))
    df = df.astype({"pfn": "Int64", "ts_ns": "int64", "pid": "Int64"})
    df = df.sort_values(["ts_ns", "kind"], kind="stable").reset_index(drop=True)
    return df


def find_anomalies(trace: TraceLike, threshold_ns: int = DEFAULT_THRESHOLD_NS) -> pd.DataFrame:
    """Every anomaly of the catalog found in `trace`, in time order.

    Columns:
      kind      detector name (docs/anomalies.md)
      pfn       page frame number (Int64)
      ts_ns     when it happened (the trace's clock, CLOCK_MONOTONIC ns)
      pid, comm the task it is attributed to (Int64 / str, may be null)
      detail    one human sentence with the numbers that matter
      severity  "error" (a refcount rule broken) or "warning" (suspicious)
      evidence  list of row positions in trace.events (file order) proving it
    """
    m = model_mod.build(columns_of(trace), threshold_ns)
    return anomalies_of_model(m)
