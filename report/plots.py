"""Draw the report's PlotSpecs with matplotlib (Agg) as PNG data URIs.

Figures are made with matplotlib.figure.Figure, not pyplot: no global state, no
GUI backend, nothing left open. Text in plots comes from the model, already
cleaned; matplotlib's mathtext is off for it (a comm may contain `$`).
"""

from __future__ import annotations

import base64
import io
from typing import Any

from pageref.report.model import PlotSpec

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
DPI = 100


def _figure(w: float = 8.0, h: float = 3.2) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=DPI)
    return fig


def _png(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight",
                metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _history_panel(ax: Any, d: dict, series: dict, end_x: float | None, legend: bool,
                   title: str) -> None:
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


def _page_history(spec: PlotSpec) -> Any:
    d = spec.data
    zoom = d.get("zoom")
    fig = _figure(8.0, 6.4 if zoom else 3.2)
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


def _rate(spec: PlotSpec) -> Any:
    d = spec.data
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for name, ys in d["series"].items():
        ax.plot(d["x"], ys, lw=1, label=name)
    ax.set_xlabel("seconds since trace start")
    ax.set_ylabel("events/s")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3,
              frameon=False)
    ax.set_title(spec.title, fontsize=10)
    return fig


def _refcount_hist(spec: PlotSpec) -> Any:
    d = spec.data
    fig = _figure()
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


def _pins(spec: PlotSpec) -> Any:
    d = spec.data
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.step(d["x"], d["y"], where="post", color="#2ca02c")
    ax.set_xlabel("seconds since trace start")
    ax.set_ylabel("pins outstanding")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(spec.title, fontsize=10)
    return fig


def _tasks(spec: PlotSpec) -> Any:
    d = spec.data
    n = len(d["tasks"])
    fig = _figure(8.0, max(2.0, 0.3 * n + 1.0))
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


_DRAW = {"page_history": _page_history, "rate": _rate, "refcount_hist": _refcount_hist,
         "pins": _pins, "tasks": _tasks}


def render_png(spec: PlotSpec) -> str:
    """The plot as a data:image/png;base64 URI."""
    import matplotlib

    # Labels hold untrusted text (process names): no mathtext, no TeX.
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        fig = _DRAW[spec.type](spec)
        return _png(fig)
