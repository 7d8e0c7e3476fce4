"""The page's overview plots: events per second by probe, the refcount of
device pages after their last event, pins held over time, and the tasks holding
references at the end. For each: `df_*` returns the data as a documented
DataFrame, `*_spec` the (downsampled) PlotSpec, `plot_*` draws a spec."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pageref.analysis.fmt import fmt_ns
from pageref.analysis.model import PageModel
from pageref.report import history as hist
from pageref.report.downsample import minmax_indices
from pageref.report.figure import new_figure
from pageref.report.page import Limits, PlotSpec
from pageref.report.text import clean_text, column, task
from pageref.trace.io import Trace

# -- events per second by probe ----------------------------------------------------


def df_rate(trace: Trace, t0: int, limits: Limits) -> pd.DataFrame:
    """Events per second, per probe, in about `limits.rate_bins` time bins (at
    least 1 ms each). Lost records are not probe hits and are left out.

    Index t_s: the bin's centre, seconds since t0. One column per probe symbol
    (an event without one counts under its kind) for the `limits.probes_plotted`
    busiest, the rest summed as "other". df.attrs["bin_ns"]: the bin width.
    Empty (no columns) when there is no event."""
    ev = trace.events
    ev = ev[~hist.kind_is(ev, "lost")] if len(ev) else ev
    if not len(ev):
        return pd.DataFrame()
    ts = ev["ts_ns"].to_numpy(dtype=np.int64)
    lo, hi = int(ts.min()), int(ts.max())
    span = max(hi - lo, 1)
    width = max(span / limits.rate_bins, 1e6)  # at least 1 ms per bin
    nbins = max(1, int(np.ceil(span / width)))
    b = np.minimum(((ts - lo) / width).astype(np.int64), nbins - 1)
    # label codes: the probe symbol, or the kind for events without one
    pc, pnames = hist.codes(column(ev, "probe"))
    kc, knames = hist.codes(ev["kind"])
    label = np.where(pc >= 0, pc, len(pnames) + kc)
    names = [str(p) for p in pnames] + [str(k) for k in knames]
    per_label = np.bincount(label, minlength=len(names))
    ranked = [i for i in np.argsort(-per_label, kind="stable") if per_label[i] > 0]
    top = ranked[: limits.probes_plotted]
    grid = np.bincount(b * len(names) + label, minlength=nbins * len(names)) \
        .reshape(nbins, len(names))
    cols = {names[i]: grid[:, i] for i in top}
    if len(ranked) > len(top):
        cols["other"] = grid[:, ranked[len(top):]].sum(axis=1)
    x = ((np.arange(nbins) + 0.5) * width + lo - t0) / 1e9
    df = pd.DataFrame({p: c / (width / 1e9) for p, c in cols.items()},
                      index=pd.Index(x, name="t_s"))
    df.attrs["bin_ns"] = width
    return df


def rate_spec(trace: Trace, t0: int, limits: Limits) -> PlotSpec | None:
    df = df_rate(trace, t0, limits)
    if df.empty:
        return None
    width = float(df.attrs["bin_ns"])
    series = {clean_text(p, 60): df[p].tolist() for p in df.columns}
    return PlotSpec(id="rate", title="Events per second by probe", type="rate",
                    data={"x": df.index.tolist(), "series": series, "bin_s": width / 1e9,
                          "_points": len(df)},
                    note=f"{len(df):,} bins of {fmt_ns(width)}",
                    alt="Events per second by probe over time")


def plot_rate(spec: PlotSpec) -> Any:
    d = spec.data
    fig = new_figure()
    ax = fig.add_subplot(1, 1, 1)
    for name, ys in d["series"].items():
        ax.plot(d["x"], ys, lw=1, label=name)
    ax.set_xlabel("seconds since trace start")
    ax.set_ylabel("events/s")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3,
              frameon=False)
    ax.set_title(spec.title, fontsize=10)
    return fig


# -- refcount of device pages after their last event -------------------------------

HIST_BINS = 40  # distinct values up to this many are counted one by one


def df_refcount_last(trace: Trace) -> pd.DataFrame:
    """How many device pages end the trace at each refcount.

    Columns: label (str: the refcount, or a "lo–hi" range when there are more
    than HIST_BINS distinct values), pages (int). df.attrs: binned (bool),
    pages (int: device pages), pinned (int: pages at or above the pin bias)."""
    last = hist.last_refcount_per_page(trace, device_only=True)
    if last is None or not len(last):
        return pd.DataFrame(columns=["label", "pages"])
    vals = last.to_numpy(dtype=np.int64)
    uniq, cnt = np.unique(vals, return_counts=True)
    if len(uniq) <= HIST_BINS:
        df = pd.DataFrame({"label": [str(int(u)) for u in uniq], "pages": cnt})
        df.attrs["binned"] = False
    else:
        counts, edges = np.histogram(vals, bins=HIST_BINS)
        df = pd.DataFrame({"label": [f"{int(edges[i])}–{int(edges[i + 1])}"
                                     for i in range(HIST_BINS)], "pages": counts})
        df.attrs["binned"] = True
    df.attrs["pages"] = len(vals)
    df.attrs["pinned"] = int((vals >= trace.header.pin_bias).sum())
    return df


def refcount_hist_spec(trace: Trace) -> PlotSpec | None:
    df = df_refcount_last(trace)
    if df.empty:
        return None
    data: dict[str, Any] = {"labels": df["label"].tolist(), "counts": df["pages"].tolist(),
                            "binned": df.attrs["binned"], "_points": len(df)}
    return PlotSpec(id="refcount-hist", title="Refcount of device pages after their last event",
                    type="refcount_hist", data=data,
                    note=f"{df.attrs['pages']:,} device pages; {df.attrs['pinned']:,} at or "
                         f"above the pin bias ({trace.header.pin_bias})",
                    alt="Distribution of device page refcounts")


def plot_refcount_hist(spec: PlotSpec) -> Any:
    d = spec.data
    fig = new_figure()
    ax = fig.add_subplot(1, 1, 1)
    xs = range(len(d["labels"]))
    ax.bar(xs, d["counts"], color="#1f77b4")
    step = max(1, len(d["labels"]) // 20)
    ax.set_xticks(list(xs)[::step])
    ax.set_xticklabels(d["labels"][::step], rotation=45 if d["binned"] else 0, fontsize=7)
    ax.set_xlabel("refcount")
    ax.set_ylabel("pages")
    ax.set_title(spec.title, fontsize=10)
    return fig


# -- pins held over time ---------------------------------------------------------


def df_pins(model: PageModel | None) -> pd.DataFrame:
    """Pins outstanding on all pages after each change, as the analysis counts
    them (its page model: a pin released through put_page is released there, a
    free ends the page's life). No model, or no pin in it: no rows.

    Columns: ts_ns (int), held (int). df.attrs["source"] says where the count
    comes from."""
    s = hist.pins_over_time_from_model(model) if model is not None else None
    if s is None:
        s = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    df = pd.DataFrame({"ts_ns": s[0], "held": s[1]})
    df.attrs["source"] = "the analysis's count"
    return df


def pins_spec(trace: Trace, t0: int, limits: Limits,
              model: PageModel | None = None) -> PlotSpec | None:
    df = df_pins(model)
    if df.empty:
        return None
    ts, held = df["ts_ns"].to_numpy(), df["held"].to_numpy()
    n = len(ts)
    idx = minmax_indices(held.astype(np.float64), limits.plot_points)
    return PlotSpec(id="pins", title="Pins held over time (all pages)",
                    type="pins",
                    data={"x": ((ts[idx] - t0) / 1e9).tolist(), "y": held[idx].tolist(),
                          "_points": int(len(idx))},
                    note=(f"{df.attrs['source']}; "
                          + (f"downsampled from {n:,} changes" if len(idx) < n
                             else f"{n:,} changes")),
                    alt="Pins outstanding over time")


def plot_pins(spec: PlotSpec) -> Any:
    d = spec.data
    fig = new_figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.step(d["x"], d["y"], where="post", color="#2ca02c")
    ax.set_xlabel("seconds since trace start")
    ax.set_ylabel("pins outstanding")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(spec.title, fontsize=10)
    return fig


# -- tasks holding references ------------------------------------------------------


def df_tasks(trace: Trace) -> pd.DataFrame:
    """Tasks by references held at the end of the trace, most first
    (pageref.report.history.references_by_task: comm, pid, held_gets,
    held_pins, taken; held = taken minus dropped by the same task, per page)."""
    t = hist.references_by_task(trace)
    return pd.DataFrame() if t is None else t


def tasks_spec(trace: Trace, limits: Limits) -> PlotSpec | None:
    t = df_tasks(trace)
    if not len(t):
        return None
    top = t.head(limits.top_tasks)
    return PlotSpec(
        id="tasks", title="Top tasks by references held at the end of the trace",
        type="tasks",
        data={"tasks": [task(c, p, 40) for c, p in zip(top["comm"], top["pid"])],
              "held_gets": top["held_gets"].tolist(), "held_pins": top["held_pins"].tolist(),
              "taken": top["taken"].tolist(), "_points": len(top)},
        note=(f"top {len(top)} of {len(t):,} tasks; held = taken minus dropped by the same "
              "task, per page"),
        alt="Top tasks by references held")


def plot_tasks(spec: PlotSpec) -> Any:
    d = spec.data
    n = len(d["tasks"])
    fig = new_figure(8.0, max(2.0, 0.3 * n + 1.0))
    ax = fig.add_subplot(1, 1, 1)
    ys = list(range(n))[::-1]
    ax.barh(ys, d["held_gets"], color="#1f77b4", label="gets held")
    ax.barh(ys, d["held_pins"], left=d["held_gets"], color="#2ca02c", label="pins held")
    ax.set_yticks(ys)
    ax.set_yticklabels(d["tasks"], fontsize=8)
    ax.set_xlabel("references held at the end of the trace")
    ax.legend(fontsize=7)
    ax.set_title(spec.title, fontsize=10)
    return fig


def overview_specs(trace: Trace, t0: int, limits: Limits,
                   model: PageModel | None = None) -> list[PlotSpec]:
    """The overview plots the trace has data for, in page order."""
    specs = (rate_spec(trace, t0, limits), refcount_hist_spec(trace),
             pins_spec(trace, t0, limits, model), tasks_spec(trace, limits))
    return [p for p in specs if p is not None]
