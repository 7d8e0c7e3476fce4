"""Render a Report to one self-contained HTML file (Jinja2, autoescaping on)."""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

from pageref.report.page import PlotSpec, Report
from pageref.report.plots import render_png

TEMPLATES = Path(__file__).parent / "templates"


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    # autoescape=True for every template, whatever its name: all text on the
    # page that comes from a trace (comm, stacks, symbols) is untrusted.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(report: Report) -> str:
    """The page: inline CSS, plots as PNG data URIs, no scripts, no network."""
    cache: dict[int, str] = {}

    def img(spec: PlotSpec) -> str:
        key = id(spec)
        if key not in cache:
            cache[key] = render_png(spec)
        return cache[key]

    return environment().get_template("report.html").render(r=report, img=img)
