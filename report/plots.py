"""Draw the report's PlotSpecs as PNG data URIs: each spec type's `plot_*`
lives with its section (report/page_history.py, report/overview.py); this
module picks it and keeps untrusted text literal.

Text in plots comes from the sections, already cleaned; matplotlib's mathtext
is off for it (a comm may contain `$`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pageref.report.figure import png_uri
from pageref.report.overview import plot_pins, plot_rate, plot_refcount_hist, plot_tasks
from pageref.report.page import PlotSpec
from pageref.report.page_history import plot_page_history

DRAW: dict[str, Callable[[PlotSpec], Any]] = {
    "page_history": plot_page_history, "rate": plot_rate,
    "refcount_hist": plot_refcount_hist, "pins": plot_pins, "tasks": plot_tasks,
}


def render_png(spec: PlotSpec) -> str:
    """The plot as a data:image/png;base64 URI."""
    import matplotlib

    # Labels hold untrusted text (process names): no mathtext, no TeX.
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        return png_uri(DRAW[spec.type](spec))
