"""The page history plot of an anomaly: one page's refcount and pins over
time, the evidence circled, a zoomed panel when the story is short
(`page_history_spec` builds the data, `plot_page_history` draws it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pageref.report import history as hist
from pageref.report.downsample import finite_list, minmax_indices
from pageref.report.facts import trace_end
from pageref.report.figure import new_figure
from pageref.report.page import Limits, PlotSpec
from pageref.trace.io import Trace

# Marker and colour of each event kind.
KIND_STYLE = {
    "get": ("^", "#1f77b4"),
    "pin": ("P", "#2ca02c"),
    "put": ("v", "#ff7f0e"),
    "unpin": ("X", "#9467bd"),
    "free": ("s", "#d62728"),
    "busy": ("D", "#8c564b"),
    "grab_failed": ("x", "#e377c2"),
    "lost": ("|", "#7f7f7f"),
}

ZOOM_CONTEXT = 5      # events shown either side of the evidence in the zoom panel
ZOOM_FRACTION = 0.25  # zoom when that window is narrower than this share of the plot


def _history_series(x: np.ndarray, rc: np.ndarray, pins: np.ndarray, kinds: np.ndarray,
                    idx: np.ndarray) -> dict[str, Any]:
    markers: dict[str, dict[str, list[float | None]]] = {}
    for k in sorted(set(kinds[idx])):
        sel = idx[kinds[idx] == k]
        # y None where the refcount is unknown (after lost events): not drawn
        markers[k] = {"x": finite_list(x[sel]), "y": finite_list(rc[sel])}
    return {"x": finite_list(x[idx]), "refcount": finite_list(rc[idx]),
            "pins": finite_list(pins[idx]), "markers": markers}


def page_history_spec(trace: Trace, pfn: int, anomaly_ts: int, evidence: list[int],
                      t0: int, pid: str, limits: Limits) -> PlotSpec | None:
    """The plot of page `pfn`'s refcount and pins around an anomaly at
    `anomaly_ts` (its `evidence` rows circled), or None if the trace has no
    event of that page.

    Its data: the downsampled series (x in seconds since t0, refcount, pins,
    markers per event kind) and, when the page's story is a blip on the full
    time axis, a `zoom` panel at full resolution around the anomaly."""
    h = hist.page_history(trace, pfn)
    if h is None or not len(h):
        return None
    n = len(h)
    x = (h["ts_ns"].to_numpy(dtype=np.int64) - t0) / 1e9
    rc = h["refcount_after"].to_numpy(dtype=np.float64)
    pins = h["pins_decoded"].to_numpy(dtype=np.float64)
    pos = h["pos"].to_numpy(dtype=np.int64)
    keep = np.flatnonzero(np.isin(pos, evidence))
    rc_fill = np.nan_to_num(rc, nan=0.0)
    idx = minmax_indices(rc_fill, limits.plot_points, keep)
    kinds = hist.values(h["kind"]).astype(str)
    anomaly_x = (anomaly_ts - t0) / 1e9
    end_x = (max(trace_end(trace), int(h["ts_ns"].max())) - t0) / 1e9
    data = _history_series(x, rc, pins, kinds, idx)
    data.update({
        "evidence_x": finite_list(x[keep]),
        "evidence_y": finite_list(rc_fill[keep]),
        "anomaly_x": anomaly_x,
        # where the history has a hole (events lost just before this one)
        "gaps_x": finite_list(x[h["gap"].to_numpy(dtype=bool)][: 50]),
        # the last value holds until the trace ends (a leaked pin shows as held)
        "end_x": end_x,
        "pin_bias": trace.header.pin_bias,
        "zoom": None,
        "_points": int(len(idx)),
    })
    # A second panel around the anomaly when the page's story is a blip on the
    # full time axis: the evidence and a few events either side, full resolution.
    at = np.searchsorted(x, anomaly_x)
    anchors = np.concatenate([keep, [min(at, n - 1)]])
    a_lo = max(0, int(anchors.min()) - ZOOM_CONTEXT)
    a_hi = min(n - 1, int(anchors.max()) + ZOOM_CONTEXT)
    lo = min(float(x[a_lo]), anomaly_x)
    hi = max(float(x[a_hi]), anomaly_x)
    full = max(end_x, float(x.max())) - min(float(x.min()), anomaly_x)
    if full > 0 and hi - lo < ZOOM_FRACTION * full:
        pad = (hi - lo) * 0.08 if hi > lo else min(1e-3, full * 0.01)
        lo, hi = lo - pad, hi + pad
        inside = np.flatnonzero((x >= lo) & (x <= hi))
        zkeep = np.flatnonzero(np.isin(inside, keep))
        zidx = inside[minmax_indices(rc_fill[inside], limits.plot_points, zkeep)]
        zoom = _history_series(x, rc, pins, kinds, zidx)
        zoom.update({"lo": lo, "hi": hi})
        data["zoom"] = zoom
        data["_points"] = max(data["_points"], int(len(zidx)))
    note = (f"downsampled from {n:,} events" if len(idx) < n
            else f"{n:,} event" + ("" if n == 1 else "s"))
    if data["zoom"] is not None:
        note += "; lower panel: around the anomaly"
    return PlotSpec(id=f"page-{pfn:x}-{pid}", title=f"pfn {pfn:#x}: refcount and pins",
                    type="page_history", data=data, note=note,
                    alt=f"Refcount history of pfn {pfn:#x}")


def _history_panel(ax: Any, d: dict[str, Any], series: dict[str, Any], end_x: float | None,
                   legend: bool, title: str) -> None:
    x = list(series["x"])
    rc = [float("nan") if v is None else v for v in series["refcount"]]
    pins = [float("nan") if v is None else v for v in series["pins"]]
    if end_x is not None and x:
        x, rc, pins = x + [end_x], rc + rc[-1:], pins + pins[-1:]
    ax.step(x, rc, where="post", color="#333333", lw=1.2, label="refcount")
    for k, m in series["markers"].items():
        marker, color = KIND_STYLE.get(k, ("o", "#17becf"))
        ys = [float("nan") if v is None else v for v in m["y"]]
        ax.scatter(m["x"], ys, marker=marker, color=color, s=28, zorder=3, label=k)
    if d["evidence_x"]:
        ax.scatter(d["evidence_x"], d["evidence_y"], s=120, facecolors="none",
                   edgecolors="#d62728", linewidths=1.5, zorder=4, label="evidence")
    for i, gx in enumerate(d.get("gaps_x", [])):
        ax.axvline(gx, color="#7f7f7f", ls=":", lw=1, label="events lost before" if i == 0
                   else None)
    ax.axvline(d["anomaly_x"], color="#d62728", ls="--", lw=1.2, label="anomaly")
    ax.set_xlabel("seconds since trace start")
    ax.set_ylabel("refcount")
    finite = [v for v in series["refcount"] if v is not None]
    top = max(finite + [1.0])
    bottom = min(finite + [0.0])
    pad = max(1.0, (top - bottom) * 0.08)
    ax.set_ylim(bottom - pad, top + pad)  # a flat history still gets a readable axis
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax2 = ax.twinx()
    ax2.step(x, pins, where="post", color="#2ca02c", lw=1, ls=":", label="pins (decoded)")
    ax2.set_ylabel("pins (decoded)", color="#2ca02c")
    all_pins = [v for v in d["pins"] if v is not None]
    ax2.set_ylim(-0.5, max(all_pins + [1.0]) + 0.5)
    ax2.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(title, fontsize=10)
    if legend:
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper center",
                  bbox_to_anchor=(0.5, -0.2), ncol=min(8, len(l1) + len(l2)), frameon=False)


def plot_page_history(spec: PlotSpec) -> Any:
    """Draw a page_history_spec: refcount steps, event markers, evidence circled,
    the pins on a second axis; a zoom panel below when the spec has one."""
    d = spec.data
    zoom = d.get("zoom")
    fig = new_figure(8.0, 6.4 if zoom else 3.2)
    ax = fig.add_subplot(2 if zoom else 1, 1, 1)
    _history_panel(ax, d, d, d["end_x"], legend=not zoom, title=spec.title)
    if zoom:
        axz = fig.add_subplot(2, 1, 2)
        end = d["end_x"] if zoom["hi"] >= d["end_x"] else zoom["hi"]
        _history_panel(axz, d, zoom, end, legend=True,
                       title=f"around the anomaly ({zoom['lo']:.6f} s to {zoom['hi']:.6f} s)")
        axz.set_xlim(zoom["lo"], zoom["hi"])
        ax.axvspan(zoom["lo"], zoom["hi"], color="#ffcc80", alpha=0.35, lw=0)
        fig.subplots_adjust(hspace=0.45)
    return fig
