"""matplotlib figures for the page, as PNG data URIs (generic: no domain logic).

Figures are made with matplotlib.figure.Figure, not pyplot: no global state, no
GUI backend, nothing left open.
"""

from __future__ import annotations

import base64
import io
from typing import Any

DPI = 100


def new_figure(w: float = 8.0, h: float = 3.2) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=DPI)


def png_uri(fig: Any) -> str:
    """The figure as a data:image/png;base64 URI (no timestamp: same plot, same bytes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight",
                metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
