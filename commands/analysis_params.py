"""click parameter types shared by the commands (analyze, history, report, record)."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from pageref.analysis.fmt import parse_duration, parse_pfn


class _Parsed(click.ParamType):
    """A value given as text and parsed to an int by `parse`; ints pass through
    (defaults). A ValueError becomes click's usage error."""

    def parse(self, text: str) -> int:
        return int(text)

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return self.parse(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class Duration(_Parsed):
    """10ns, 250us, 500ms, 1s, 2min, 1h; a plain number is seconds. Converts to ns
    (pageref.analysis.fmt.parse_duration). `positive`: 0 is refused too."""

    name = "DURATION"

    def __init__(self, positive: bool = False) -> None:
        self.positive = positive

    def parse(self, text: str) -> int:
        return parse_duration(text, positive=self.positive)


class Pfn(_Parsed):
    """0x140018 (hex) or 1310744 (decimal)."""

    name = "PFN"

    def parse(self, text: str) -> int:
        return parse_pfn(text)


class Progress:
    """'reading run.trace: 3,000,000 events' on stderr, only on a terminal and only
    once the work has taken a second, redrawn at most 4 times a second."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.start = time.monotonic()
        self.last = 0.0
        self.shown = False
        self.enabled = sys.stderr.isatty()

    def __call__(self, events: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.start < 1 or now - self.last < 0.25:
            return
        self.last = now
        self.shown = True
        click.echo(f"\r{self.label}: {events:,} events", err=True, nl=False)

    def done(self) -> None:
        if self.shown:
            click.echo("\r\033[K", err=True, nl=False)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start
