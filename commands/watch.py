"""`pageref watch TRACE`: replay a recorded trace through the live view."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("trace", type=click.Path(path_type=Path))
@click.option("--speed", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Replay speed: 1 is real time, 10 ten times faster, 0 as fast as possible.")
@click.option("--mode", type=click.Choice(["auto", "rich", "plain", "quiet"]), default="auto",
              show_default=True, help="rich redraws a table; plain prints lines (auto picks "
              "rich on a terminal).")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between redraws.")
def watch(trace: Path, speed: float, mode: str, interval: float) -> None:
    """Replay TRACE through the live view `pageref record` shows, at --speed."""
    from pageref.report.replay import replay

    replay(trace, speed=speed, mode=mode, interval=interval)
