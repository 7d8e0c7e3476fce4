"""What the live view knows about a recording so far: running counters, and the
anomalies as the rules engine (analysis/engine.py) decides them.

The anomaly rules have one owner, the engine; the live view feeds it each batch
and shows every kind as soon as it is decided, plus what is pending (pins held
longer than T so far, pages busy longer than T so far). At the end `finish()`
decides the rest (pin_leak, a page still busy), so the closing summary is
`pageref analyze`'s answer on the same events. Counters here are only counts:
events by kind and probe, lost events, pages seen.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pageref.analysis.columns import K
from pageref.analysis.detectors.base import Anomaly
from pageref.analysis.engine import DEFAULT_THRESHOLD_NS, REORDER_NS, Engine, Pending
from pageref.analysis.severity import Severity
from pageref.trace.header import TraceHeader
from pageref.trace.schema import DEFAULT_PIN_BIAS


def _col(df: pd.DataFrame, name: str, default: Any = None) -> pd.Series:
    if name in df.columns:
        return df[name]
    return pd.Series([default] * len(df), index=df.index, dtype=object)


def _counts(a: np.ndarray) -> dict[str, int]:
    return {str(k): int(v) for k, v in pd.Series(a, dtype=object).value_counts().items()}


def _strs(s: pd.Series, fill: Any) -> np.ndarray:
    """A string column as an object array (`fill` for null); categoricals by code,
    which is what keeps a 100k-event batch cheap."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = np.append(np.asarray(s.cat.categories.astype(object), dtype=object), fill)
        return np.asarray(cats[s.cat.codes.to_numpy()])
    a = s.to_numpy(dtype=object)
    return np.asarray(np.where(pd.isna(a), fill, a))


def _ints(s: pd.Series, fill: int) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").fillna(fill).to_numpy(dtype=np.int64)


class LiveState:
    """Running totals over the batches fed so far, and the engine's verdicts."""

    def __init__(
        self,
        pin_bias: int = DEFAULT_PIN_BIAS,
        idle_refcount: Mapping[str, int] | None = None,
        latest: int = 5,
        threshold_ns: int = DEFAULT_THRESHOLD_NS,
        reorder_ns: int = REORDER_NS,
    ) -> None:
        self.engine = Engine(TraceHeader(pin_bias=int(pin_bias),
                                         idle_refcount=dict(idle_refcount or {})),
                             threshold_ns, reorder_ns)
        self.events = 0
        self.by_kind: collections.Counter[str] = collections.Counter()
        self.by_probe: collections.Counter[str] = collections.Counter()
        self.lost_from_events = 0
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.pages: set[int] = set()
        self.anomalies: collections.Counter[str] = collections.Counter()
        self.uncertain = 0                     # of those, verdicts across lost events
        self.latest: collections.deque[Anomaly] = collections.deque(maxlen=latest)
        self.new_anomalies: list[Anomaly] = []  # since the last take_new()
        self.finished = False

    # -- derived -----------------------------------------------------------
    def _pins_by_page(self) -> np.ndarray:
        m = self.engine.model
        if m is None or not len(m.kind):
            return np.zeros(0, dtype=np.int64)
        last = np.append(np.flatnonzero(m.page_starts)[1:] - 1, len(m.kind) - 1)
        return np.where(m.kind[last] == K["free"], 0, m.pins_after[last])

    @property
    def pins_outstanding(self) -> int:
        """Pins counted outstanding (the engine's P, as `pageref analyze` counts)."""
        return int(self._pins_by_page().sum())

    @property
    def pages_pinned(self) -> int:
        return int((self._pins_by_page() > 0).sum())

    def pending(self) -> list[Pending]:
        """Pins held longer than T so far; pages busy longer than T so far."""
        return [] if self.finished else self.engine.pending()

    def take_new(self) -> list[Anomaly]:
        new, self.new_anomalies = self.new_anomalies, []
        return new

    # -- feeding -----------------------------------------------------------
    def feed(self, events: pd.DataFrame) -> None:
        if events is None or len(events) == 0:
            return
        df = events
        if "ts_ns" in df.columns:
            ts = _ints(df["ts_ns"], 0)
            lo, hi = int(ts.min()), int(ts.max())
            self.first_ts = lo if self.first_ts is None else min(self.first_ts, lo)
            self.last_ts = hi if self.last_ts is None else max(self.last_ts, hi)
        kind = _strs(_col(df, "kind"), "?")
        self.events += len(df)
        self.by_kind.update(_counts(kind))
        lost = kind == "lost"
        probe = _strs(_col(df, "probe"), None)
        probe = np.where(pd.isna(probe), kind, probe)
        self.by_probe.update(_counts(probe[~lost]))  # a lost record is not a hit
        if "count" in df.columns:
            self.lost_from_events += int(_ints(df["count"], 0)[lost].sum())
        pfn_s = pd.to_numeric(_col(df, "pfn"), errors="coerce")
        has_pfn = pfn_s.notna().to_numpy() & ~lost
        pfn = pfn_s.fillna(-1).to_numpy(dtype=np.int64)
        self.pages.update(np.unique(pfn[has_pfn]).tolist())
        used = [c for c in df.columns if c != "stack"]   # stacks are not read by the rules
        self._take(self.engine.feed_frame(df[used]))

    def finish(self) -> None:
        """The end of the recording: decide what only the end decides."""
        if not self.finished:
            self._take(self.engine.finish())
            self.finished = True

    def _take(self, found: list[Anomaly]) -> None:
        for a in found:
            self.anomalies[a.kind] += 1
            self.uncertain += a.severity == Severity.UNCERTAIN.value
            self.latest.append(a)
            self.new_anomalies.append(a)
        if len(self.new_anomalies) > 1000:  # nobody is reading; keep memory flat
            del self.new_anomalies[:-500]
