"""What the live view knows about a recording so far: counters and cheap checks.

The live view cannot run the real analysis (it needs the whole trace); it keeps
a few running totals and the anomaly checks that can be decided incrementally
from one batch plus a little per-page state. They are a preview: the
authoritative answer is `pageref analyze` on the finished trace.

Incremental checks (same definitions as the anomaly catalog, docs/report.md):
- grab_on_free_page: a get/pin on a page whose observed refcount is 0;
- refcount_underflow: a put (-refs) or unpin (-refs x w) taking the observed
  refcount below the idle refcount of the page's pgmap type;
- longterm_pin_fsdax: a long-term pin on an fsdax page;
- double_free: a second free of a pfn with no get/pin in between;
- free_while_referenced: a free while pins taken in the trace are outstanding.
Everything is vectorised per batch; only per-page dictionaries persist.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping

import numpy as np
import pandas as pd

from pageref.trace.schema import DEFAULT_PIN_BIAS

LIVE_KINDS = (
    "refcount_underflow",
    "grab_on_free_page",
    "free_while_referenced",
    "double_free",
    "longterm_pin_fsdax",
)


@dataclasses.dataclass(frozen=True)
class LiveAnomaly:
    kind: str
    pfn: int | None
    ts_ns: int
    pid: int | None
    comm: str | None


def _col(df: pd.DataFrame, name: str, default: object = None) -> pd.Series:
    if name in df.columns:
        return df[name]
    return pd.Series([default] * len(df), index=df.index, dtype=object)


_USED = ("ts_ns", "kind", "probe", "count", "pfn", "refs", "refcount", "order", "pgmap_type",
         "longterm", "pid", "comm")


def _counts(a: np.ndarray) -> dict[str, int]:
    return {str(k): int(v) for k, v in pd.Series(a, dtype=object).value_counts().items()}


def _strs(s: pd.Series, fill: object) -> np.ndarray:
    """A string column as an object array (`fill` for null); categoricals by code,
    which is what keeps a 100k-event batch cheap."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = np.append(np.asarray(s.cat.categories.astype(object), dtype=object), fill)
        return cats[s.cat.codes.to_numpy()]
    a = s.to_numpy(dtype=object)
    return np.where(pd.isna(a), fill, a)


def _ints(s: pd.Series, fill: int) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").fillna(fill).to_numpy(dtype=np.int64)


class LiveState:
    """Running totals over the batches fed so far."""

    def __init__(
        self,
        pin_bias: int = DEFAULT_PIN_BIAS,
        idle_refcount: Mapping[str, int] | None = None,
        latest: int = 5,
    ) -> None:
        self.pin_bias = int(pin_bias)
        self.idle_refcount = dict(idle_refcount or {})
        self.events = 0
        self.by_kind: collections.Counter[str] = collections.Counter()
        self.by_probe: collections.Counter[str] = collections.Counter()
        self.lost_from_events = 0
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.pages: set[int] = set()
        self.pins: dict[int, int] = {}  # pfn -> pins outstanding (counted from the trace)
        self._last_grab_or_free: dict[int, str] = {}  # pfn -> "free" / "grab"
        self.anomalies: collections.Counter[str] = collections.Counter()
        self.latest: collections.deque[LiveAnomaly] = collections.deque(maxlen=latest)
        self.new_anomalies: list[LiveAnomaly] = []  # since the last take_new()

    # -- derived -----------------------------------------------------------
    @property
    def pins_outstanding(self) -> int:
        return sum(self.pins.values())

    @property
    def pages_pinned(self) -> int:
        return sum(1 for v in self.pins.values() if v > 0)

    def take_new(self) -> list[LiveAnomaly]:
        new, self.new_anomalies = self.new_anomalies, []
        return new

    # -- feeding -----------------------------------------------------------
    def feed(self, events: pd.DataFrame) -> None:
        if events is None or len(events) == 0:
            return
        # Only the columns the checks read (sorting stacks around costs time).
        df = events[[c for c in _USED if c in events.columns]].reset_index(drop=True)
        if "ts_ns" in df.columns:
            # Per-CPU buffers deliver batches out of order; checks need time order.
            df = df.sort_values("ts_ns", kind="stable").reset_index(drop=True)
            ts = _ints(df["ts_ns"], 0)
            lo, hi = int(ts.min()), int(ts.max())
            self.first_ts = lo if self.first_ts is None else min(self.first_ts, lo)
            self.last_ts = hi if self.last_ts is None else max(self.last_ts, hi)
        kind = _strs(_col(df, "kind"), "?")
        self.events += len(df)
        self.by_kind.update(_counts(kind))
        # Boolean masks per kind, computed once (object-array compares are slow).
        is_k = {k: kind == k for k in ("get", "pin", "put", "unpin", "free", "lost")}
        probe = _strs(_col(df, "probe"), None)
        probe = np.where(pd.isna(probe), kind, probe)
        self.by_probe.update(_counts(probe[~is_k["lost"]]))  # a lost record is not a hit
        if "count" in df.columns:
            self.lost_from_events += int(_ints(df["count"], 0)[is_k["lost"]].sum())

        pfn_s = pd.to_numeric(_col(df, "pfn"), errors="coerce")
        has_pfn = pfn_s.notna().to_numpy()
        pfn = pfn_s.fillna(-1).to_numpy(dtype=np.int64)
        self.pages.update(np.unique(pfn[has_pfn]).tolist())

        refs = _ints(_col(df, "refs"), 1)
        refcount_s = pd.to_numeric(_col(df, "refcount"), errors="coerce")
        has_rc = refcount_s.notna().to_numpy()
        refcount = refcount_s.fillna(0).to_numpy(dtype=np.int64)
        order = _ints(_col(df, "order"), 0)
        weight = np.where(order > 0, 1, self.pin_bias)
        pgmap = _strs(_col(df, "pgmap_type"), None)
        idle = np.zeros(len(df), dtype=np.int64)
        for name, value in self.idle_refcount.items():
            if value:
                idle[pgmap == name] = int(value)
        longterm = _col(df, "longterm").astype(object).fillna(False).astype(bool).to_numpy()
        is_fsdax = pgmap == "fsdax"

        grab = (is_k["get"] | is_k["pin"]) & has_pfn
        found: list[tuple[str, np.ndarray]] = [
            ("grab_on_free_page", grab & has_rc & (refcount == 0)),
            ("refcount_underflow", has_pfn & has_rc & (
                (is_k["put"] & (refcount - refs < idle))
                | (is_k["unpin"] & (refcount - refs * weight < idle)))),
            ("longterm_pin_fsdax", is_k["pin"] & longterm & is_fsdax),
        ]

        # Pins outstanding before each row: carried state + running sum in the batch.
        delta = np.where(is_k["pin"], refs, 0) - np.where(is_k["unpin"], refs, 0)
        delta = np.where(has_pfn, delta, 0)
        frame = pd.DataFrame({"pfn": pfn, "delta": delta})[has_pfn]
        before = np.zeros(len(df), dtype=np.int64)
        if len(frame):
            base = frame["pfn"].map(self.pins).fillna(0).to_numpy(dtype=np.int64)
            run = frame.groupby("pfn")["delta"].cumsum().to_numpy() - frame["delta"].to_numpy()
            before[has_pfn] = base + run
            after = frame.assign(d=frame["delta"]).groupby("pfn")["d"].sum()
            for p, d in after.items():
                if d:
                    # Unpins of pins taken before the trace began must not go negative.
                    self.pins[int(p)] = max(0, self.pins.get(int(p), 0) + int(d))
        found.append(("free_while_referenced", is_k["free"] & has_pfn & (before > 0)))

        # double free: previous free/get/pin on the same pfn was a free.
        sel = (is_k["free"] | grab) & has_pfn
        if sel.any():
            sub = pd.DataFrame({"pfn": pfn[sel], "k": np.where(is_k["free"][sel], "free",
                                                               "grab")}, index=np.flatnonzero(sel))
            prev = sub.groupby("pfn")["k"].shift().astype(object)
            carried = sub["pfn"].map(self._last_grab_or_free).astype(object)
            prev = prev.where(prev.notna(), carried)
            dbl = np.zeros(len(df), dtype=bool)
            dbl[sub.index[((sub["k"] == "free") & (prev == "free")).to_numpy(bool)]] = True
            found.append(("double_free", dbl))
            self._last_grab_or_free.update(sub.groupby("pfn")["k"].last().to_dict())

        hits = []
        for name, mask in found:
            for i in np.flatnonzero(mask):
                hits.append((int(i), name))
        if hits:
            hits.sort()
            ts_col = _col(df, "ts_ns")
            pid_col = _col(df, "pid")
            comm_col = _col(df, "comm")
            for i, name in hits:
                pid = pid_col.iloc[i]
                comm = comm_col.iloc[i]
                a = LiveAnomaly(
                    kind=name,
                    pfn=int(pfn[i]) if has_pfn[i] else None,
                    ts_ns=int(ts_col.iloc[i]) if pd.notna(ts_col.iloc[i]) else 0,
                    pid=int(pid) if pd.notna(pid) else None,
                    comm=str(comm) if pd.notna(comm) else None,
                )
                self.anomalies[name] += 1
                self.latest.append(a)
                self.new_anomalies.append(a)
                if len(self.new_anomalies) > 1000:  # nobody is reading; keep memory flat
                    del self.new_anomalies[:500]
