"""pageref probes: the probe plan for this kernel (or a kernel's facts), read-only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from pageref.tracer.facts import KernelFacts

EPILOG = """\b
Examples:
  pageref probes                                    # this kernel, no root needed
  pageref probes --json
  pageref probes --kernel-facts tests/fixtures/kernels/7.2

\b
Shows which kernel function carries each logical probe (grab, put, free, busy),
which targets are missing and why, and which reference-drop paths are covered
and which are not. See docs/tracer.md.
"""


@click.command(epilog=EPILOG)
@click.option("--kernel-facts", "facts_path", type=click.Path(exists=True, path_type=Path),
              help="Plan for a kernel described by a facts extract (facts.json or its dir).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def probes(facts_path: Path | None, as_json: bool) -> None:
    """Print the probe plan for this kernel: what pageref would attach, what is
    missing, which drop paths are covered. Needs no root; changes nothing."""
    from pageref.tracer.facts import KernelFacts
    from pageref.tracer.probes_text import plan_report

    if facts_path:
        facts = KernelFacts.load(facts_path)
    else:
        facts = _live_facts()
    report = plan_report(facts)
    if as_json:
        click.echo(json.dumps(report, indent=1, sort_keys=True))
    else:
        click.echo(report["text"], nl=False)


def _live_facts() -> KernelFacts:
    """This kernel's facts; without BTF, the layout from its headers (a compile,
    no root needed). If that fails, the plan is still shown, with the reason."""
    from pageref.errors import PagerefError
    from pageref.tracer.facts import KernelFacts
    from pageref.tracer.header_layout import live_facts

    try:
        return live_facts()
    except PagerefError as e:
        facts = KernelFacts.live()
        facts.layout_note = f"not readable: {e}"
        return facts
